// What the wire layer calls: the seven RPCs' semantics, nothing of how they
// are built. Imports only types, so bin/plugin.ts can hand the server a service that
// is still being built without loading it.
import type { ArtifactService } from "./service.js";

export type ArtifactOps = Pick<
  ArtifactService,
  "resolve" | "load" | "save" | "saveStream" | "delete" | "listObjects" | "isDirectory" | "openStream"
>;

/**
 * The operations of a service still being built: each call waits for it.
 * bin/plugin.ts binds the socket before the S3 and transfer modules are loaded, so
 * it appears sooner (Argo's client looks for it once a second).
 */
export function whenBuilt(built: Promise<ArtifactOps>): ArtifactOps {
  return {
    resolve: async (...a) => (await built).resolve(...a),
    load: async (...a) => (await built).load(...a),
    save: async (...a) => (await built).save(...a),
    saveStream: async (...a) => (await built).saveStream(...a),
    delete: async (...a) => (await built).delete(...a),
    listObjects: async (...a) => (await built).listObjects(...a),
    isDirectory: async (...a) => (await built).isDirectory(...a),
    openStream: async (...a) => (await built).openStream(...a),
  };
}
