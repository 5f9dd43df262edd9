// Loads proto/artifact.proto at start-up with @grpc/proto-loader: the .proto
// file stays the single source of the wire contract and no protoc toolchain is
// needed to build or run the plugin.
import { join } from "node:path";
import { PACKAGE_ROOT } from "../package-root.js";
import { loadSync } from "@grpc/proto-loader";
import { type ServiceDefinition, loadPackageDefinition } from "@grpc/grpc-js";
import { encodeBytesFieldInPlace } from "../util/headroom.js";

export const PROTO_PATH = join(PACKAGE_ROOT, "proto", "artifact.proto");

export function loadArtifactService(): ServiceDefinition {
  const def = loadSync(PROTO_PATH, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as unknown as {
    artifact: { ArtifactService: { service: ServiceDefinition } };
  };
  const service = pkg.artifact.ArtifactService.service;
  const open = service["OpenStream"];
  if (!open) return service;
  // Data frames marked inPlace are encoded in the room in front of their bytes (util/headroom.ts).
  const serialize = open.responseSerialize;
  const inPlace = (msg: { data?: Buffer; inPlace?: boolean }): Buffer =>
    msg.inPlace && msg.data ? encodeBytesFieldInPlace(msg.data) : serialize(msg);
  return { ...service, OpenStream: { ...open, responseSerialize: inPlace } };
}
