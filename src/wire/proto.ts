// Loads proto/artifact.proto at start-up with @grpc/proto-loader: the .proto
// file stays the single source of the wire contract and no protoc toolchain is
// needed to build or run the plugin.
import { fileURLToPath } from "node:url";
import { loadSync } from "@grpc/proto-loader";
import { type ServiceDefinition, loadPackageDefinition } from "@grpc/grpc-js";

export const PROTO_PATH = fileURLToPath(new URL("../../proto/artifact.proto", import.meta.url));

export function loadArtifactService(): ServiceDefinition {
  const def = loadSync(PROTO_PATH, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as unknown as { artifact: { ArtifactService: { service: ServiceDefinition } } };
  return pkg.artifact.ArtifactService.service;
}
