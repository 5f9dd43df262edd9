// gRPC discovery on the plugin's socket: Health (grpc.health.v1) and server
// reflection, called with clients built from the grpc-node packages' own
// .proto files — what grpcurl and health probes do.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { type Client, type ClientDuplexStream, credentials, loadPackageDefinition, status } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { IDescriptorProto, IFileDescriptorProto } from "protobufjs/ext/descriptor/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PluginProcess, startPlugin } from "../support/plugin.js";
import { within } from "../support/bounded.js";
import { healthCheck as check, healthClient } from "../support/health.js";

type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}
interface ReflectionClient extends Client {
  serverReflectionInfo(): ClientDuplexStream<Record<string, string>, ReflectionResponse>;
}

const opts = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

const reflectionRoot = join(
  dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")),
  "build",
  "proto",
);

function reflectionClient(socket: string, version: "v1" | "v1alpha"): ReflectionClient {
  const def = loadSync(`grpc/reflection/${version}/reflection.proto`, { ...opts, includeDirs: [reflectionRoot] });
  const pkg = loadPackageDefinition(def) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: Ctor }> };
  };
  return new pkg.grpc.reflection[version]!.ServerReflection(
    `unix:${socket}`,
    credentials.createInsecure(),
  ) as ReflectionClient;
}

/** One request on a reflection stream, its one response. */
function reflect(c: ReflectionClient, req: Record<string, string>): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = c.serverReflectionInfo();
    call.once("data", (res: ReflectionResponse) => {
      resolve(res);
      call.end();
    });
    call.once("error", reject);
    call.write(req);
  });
}

let plugin: PluginProcess;
beforeAll(async () => {
  plugin = await startPlugin();
});
afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
});

describe("grpc.health.v1.Health", () => {
  it("Check answers SERVING for the server and for artifact.ArtifactService", async () => {
    const c = healthClient(plugin.socket);
    try {
      expect(await check(c, "")).toEqual({ status: "SERVING" });
      expect(await check(c, "artifact.ArtifactService")).toEqual({ status: "SERVING" });
      await expect(check(c, "no.such.Service")).rejects.toMatchObject({ code: status.NOT_FOUND });
    } finally {
      c.close();
    }
  });

  it("Watch sees SERVING, then NOT_SERVING on SIGTERM; an open Watch does not hold the shutdown", async () => {
    // A long grace: if the Watch stream held the drain, the exit would take 60 s.
    const p = await startPlugin({ ARGO_S3_PLUGIN_GRACE_SECONDS: "60" });
    const c = healthClient(p.socket);
    const seen: string[] = [];
    const call = c.watch({ service: "" });
    const ended = new Promise<void>((resolve) => {
      call.on("data", (m: { status: string }) => {
        seen.push(m.status);
        if (m.status === "SERVING") p.proc.kill("SIGTERM");
      });
      call.on("error", () => resolve());
      call.on("end", () => resolve());
    });
    // Well under the 60 s grace: the open Watch did not hold the drain.
    await within(ended, 10_000, "the Watch stream's end after SIGTERM");
    expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
    expect(await within(p.stop(), 10_000, "the plugin's exit with a Watch open")).toBe(0);
    c.close();
  });
});

describe("server reflection", () => {
  it.each(["v1", "v1alpha"] as const)(
    "%s list_services names the artifact, health and reflection services",
    async (version) => {
      const c = reflectionClient(plugin.socket, version);
      try {
        const res = await reflect(c, { listServices: "*" });
        const names = res.listServicesResponse!.service.map((s) => s.name);
        expect(names).toEqual(expect.arrayContaining(["artifact.ArtifactService", "grpc.health.v1.Health"]));
        expect(names).toContain("grpc.reflection.v1.ServerReflection");
      } finally {
        c.close();
      }
    },
  );

  it("file_containing_symbol returns the artifact proto with its snake_case field names", async () => {
    const c = reflectionClient(plugin.socket, "v1");
    try {
      const res = await reflect(c, { fileContainingSymbol: "artifact.ArtifactService" });
      const files = res.fileDescriptorResponse!.fileDescriptorProto;
      expect(files.length).toBeGreaterThan(0);
      const all = Buffer.concat(files).toString("latin1");
      // Names grpcurl shows and accepts in JSON requests: the proto's own.
      for (const name of [
        "artifact.proto",
        "ArtifactService",
        "OpenStream",
        "SaveStream",
        "input_artifact",
        "supports_save_stream",
      ]) {
        expect(all).toContain(name);
      }
    } finally {
      c.close();
    }
  });

  it("every served descriptor passes Go's map-entry rule (grpcurl refuses the file otherwise)", async () => {
    const { FileDescriptorProto } = createRequire(import.meta.url)(
      "protobufjs/ext/descriptor/index.js",
    ) as typeof import("protobufjs/ext/descriptor/index.js");
    const c = reflectionClient(plugin.socket, "v1");
    try {
      const entries: string[] = [];
      for (const symbol of [
        "artifact.ArtifactService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]) {
        const res = await reflect(c, { fileContainingSymbol: symbol });
        for (const bin of res.fileDescriptorResponse!.fileDescriptorProto) {
          const file = FileDescriptorProto.decode(bin) as unknown as IFileDescriptorProto;
          const visit = (m: IDescriptorProto): void => {
            for (const f of m.field ?? []) {
              const entry = m.nestedType?.find((n) => n.options?.mapEntry && f.typeName?.split(".").pop() === n.name);
              if (!entry) continue;
              const camel = f.name!.replace(/(?:^|_)(.)/g, (_m, ch: string) => ch.toUpperCase());
              entries.push(`${m.name}.${entry.name}`);
              expect(entry.name).toBe(`${camel}Entry`);
            }
            (m.nestedType ?? []).forEach(visit);
          };
          (file.messageType ?? []).forEach(visit);
        }
      }
      // health.proto's HealthListResponse.statuses is a map: the rule was exercised.
      expect(entries).toContain("HealthListResponse.StatusesEntry");
    } finally {
      c.close();
    }
  });

  it("artifact RPCs still work beside the discovery services", async () => {
    expect(await plugin.client.getCapabilities()).toEqual({ supportsSaveStream: true });
  });
});
