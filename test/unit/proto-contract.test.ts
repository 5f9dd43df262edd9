// The .proto must match Argo's wire contract exactly: Argo's Go client marshals
// these messages by field number, so a renumbered or retyped field is silently
// dropped or misread, and a renamed method is UNIMPLEMENTED. The expected table
// below is written from the contract (§2), not derived from the file under test.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { loadArtifactService } from "../../src/wire/proto.js";

const PROTO = fileURLToPath(new URL("../../proto/artifact.proto", import.meta.url));

/** [number, name, type, "repeated"?]; message types by their short name. */
type FieldSpec = [number, string, string, "repeated"?];

const MESSAGES: Record<string, FieldSpec[]> = {
  PluginArtifact: [
    [1, "name", "string"],
    [2, "configuration", "string"],
    [3, "connection_timeout_seconds", "int32"],
    [4, "key", "string"],
  ],
  Artifact: [
    [1, "name", "string"],
    [2, "path", "string"],
    [3, "mode", "int32"],
    [4, "from", "string"],
    [5, "plugin", "PluginArtifact"],
    [6, "optional", "bool"],
    [7, "sub_path", "string"],
    [8, "recurse_mode", "bool"],
    [9, "from_expression", "string"],
    [10, "deleted", "bool"],
  ],
  LoadArtifactRequest: [
    [1, "input_artifact", "Artifact"],
    [2, "path", "string"],
  ],
  LoadArtifactResponse: [
    [1, "success", "bool"],
    [2, "error", "string"],
  ],
  OpenStreamRequest: [[1, "artifact", "Artifact"]],
  OpenStreamResponse: [
    [1, "data", "bytes"],
    [2, "is_end", "bool"],
    [3, "error", "string"],
  ],
  SaveArtifactRequest: [
    [1, "path", "string"],
    [2, "output_artifact", "Artifact"],
  ],
  SaveArtifactResponse: [
    [1, "success", "bool"],
    [2, "error", "string"],
  ],
  DeleteArtifactRequest: [[1, "artifact", "Artifact"]],
  DeleteArtifactResponse: [
    [1, "success", "bool"],
    [2, "error", "string"],
  ],
  ListObjectsRequest: [[1, "artifact", "Artifact"]],
  ListObjectsResponse: [
    [1, "objects", "string", "repeated"],
    [2, "error", "string"],
  ],
  IsDirectoryRequest: [[1, "artifact", "Artifact"]],
  IsDirectoryResponse: [
    [1, "is_directory", "bool"],
    [2, "error", "string"],
  ],
  SaveStreamArtifactRequest: [
    [1, "output_artifact", "Artifact"],
    [2, "chunk", "bytes"],
  ],
  GetCapabilitiesRequest: [],
  GetCapabilitiesResponse: [[1, "supports_save_stream", "bool"]],
};

type Shape = "unary" | "server-streaming" | "client-streaming";

/** method → [request, response, shape] */
const METHODS: Record<string, [string, string, Shape]> = {
  Load: ["LoadArtifactRequest", "LoadArtifactResponse", "unary"],
  OpenStream: ["OpenStreamRequest", "OpenStreamResponse", "server-streaming"],
  Save: ["SaveArtifactRequest", "SaveArtifactResponse", "unary"],
  Delete: ["DeleteArtifactRequest", "DeleteArtifactResponse", "unary"],
  ListObjects: ["ListObjectsRequest", "ListObjectsResponse", "unary"],
  IsDirectory: ["IsDirectoryRequest", "IsDirectoryResponse", "unary"],
  SaveStream: ["SaveStreamArtifactRequest", "SaveArtifactResponse", "client-streaming"],
  GetCapabilities: ["GetCapabilitiesRequest", "GetCapabilitiesResponse", "unary"],
};

const SCALARS = new Set(["string", "int32", "bool", "bytes"]);

const shapeOf = (requestStream: boolean, responseStream: boolean): string =>
  requestStream && responseStream
    ? "bidi"
    : requestStream
      ? "client-streaming"
      : responseStream
        ? "server-streaming"
        : "unary";

// snake_case names as written in the file (protobufjs camel-cases by default).
const root = new protobuf.Root().loadSync(PROTO, { keepCase: true });
root.resolveAll();
const pkg = root.lookup("artifact");

describe("proto/artifact.proto matches Argo's wire contract", () => {
  it("is proto3 in package `artifact` and declares nothing else at the top level", () => {
    expect(readFileSync(PROTO, "utf8")).toMatch(/^\s*syntax\s*=\s*"proto3"\s*;/m);
    expect(root.nestedArray.map((n) => n.name)).toEqual(["artifact"]);
    expect(pkg).toBeInstanceOf(protobuf.Namespace);
  });

  it("declares exactly the contract's messages and one service", () => {
    const ns = pkg as protobuf.Namespace;
    const types = ns.nestedArray.filter((n) => n instanceof protobuf.Type).map((n) => n.name);
    const services = ns.nestedArray.filter((n) => n instanceof protobuf.Service).map((n) => n.name);
    expect(types.sort()).toEqual(Object.keys(MESSAGES).sort());
    expect(services).toEqual(["ArtifactService"]);
    // No enums or nested namespaces either.
    expect(ns.nestedArray.length).toBe(types.length + services.length);
  });

  describe.each(Object.entries(MESSAGES))("message %s", (name, expected) => {
    const type = root.lookupType(`artifact.${name}`);

    it("has exactly the contract's fields: names, numbers, types, labels", () => {
      const actual = type.fieldsArray.map((f) => ({
        id: f.id,
        name: f.name,
        type: f.type,
        repeated: f.repeated,
        map: f.map,
      }));
      const want = expected.map(([id, fname, ftype, rule]) => ({
        id,
        name: fname,
        type: ftype,
        repeated: rule === "repeated",
        map: false,
      }));
      const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;
      expect(actual.sort(byId)).toEqual(want.sort(byId));
    });

    it("uses the contract's message types for nested fields, and plain proto3 scalars otherwise", () => {
      for (const f of type.fieldsArray) {
        if (SCALARS.has(f.type)) {
          expect(f.resolvedType, `${name}.${f.name}`).toBeNull();
        } else {
          expect(f.resolvedType, `${name}.${f.name}`).toBeInstanceOf(protobuf.Type);
          expect(f.resolvedType!.fullName, `${name}.${f.name}`).toBe(`.artifact.${f.type}`);
        }
      }
    });

    it("has no oneofs (incl. proto3 `optional`), nested declarations or extensions", () => {
      expect(type.oneofsArray).toEqual([]);
      expect(type.nestedArray).toEqual([]);
      for (const f of type.fieldsArray) {
        expect(f.partOf, `${name}.${f.name}`).toBeNull();
        expect(f.extend, `${name}.${f.name}`).toBeUndefined();
      }
    });
  });

  it("service ArtifactService has exactly the 8 methods with the contract's types and streaming shapes", () => {
    const service = root.lookupService("artifact.ArtifactService");
    const actual = Object.fromEntries(
      service.methodsArray.map((m) => [
        m.name,
        [m.requestType, m.responseType, shapeOf(!!m.requestStream, !!m.responseStream)],
      ]),
    );
    expect(actual).toEqual(METHODS);
    for (const m of service.methodsArray) {
      m.resolve();
      expect(m.resolvedRequestType!.fullName).toBe(`.artifact.${METHODS[m.name]![0]}`);
      expect(m.resolvedResponseType!.fullName).toBe(`.artifact.${METHODS[m.name]![1]}`);
    }
  });

  it("gives the method paths /artifact.ArtifactService/<Method>", () => {
    const service = root.lookupService("artifact.ArtifactService");
    const paths = service.methodsArray.map((m) => `/${service.fullName.slice(1)}/${m.name}`);
    expect(paths.sort()).toEqual(
      Object.keys(METHODS)
        .map((m) => `/artifact.ArtifactService/${m}`)
        .sort(),
    );
  });

  it("is what the gRPC server actually registers (paths and streaming flags)", () => {
    // The server loads the file through @grpc/proto-loader; check its view too.
    const def = loadArtifactService();
    const actual = Object.fromEntries(
      Object.values(def).map((d) => [d.path, shapeOf(d.requestStream, d.responseStream)]),
    );
    const want = Object.fromEntries(
      Object.entries(METHODS).map(([m, [, , shape]]) => [`/artifact.ArtifactService/${m}`, shape]),
    );
    expect(actual).toEqual(want);
  });
});
