// Standard gRPC discovery on the plugin's socket: server reflection (so
// `grpcurl -plaintext unix://<socket> list|describe` works without the .proto
// at hand) and grpc.health.v1.Health (so a probe or a person can ask whether
// the plugin is serving). Both come from the grpc-node project's packages.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Server, ServiceDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { HealthImplementation } from "grpc-health-check";
import { PACKAGE_ROOT } from "../package-root.js";
import { PROTO_PATH } from "./proto.js";

/** Health service names answered: "" is the whole server, as grpc_health_probe and grpcurl ask by default. */
export const HEALTH_SERVICES = ["", "artifact.ArtifactService"] as const;

type HealthServer = Parameters<HealthImplementation["addToServer"]>[0];
type HealthHandlers = Parameters<HealthServer["addService"]>[1];
type Ending = { end(): void; on(event: "cancelled" | "finish", fn: () => void): unknown };

export class Discovery {
  private health: HealthImplementation | undefined;
  private stopped = false;
  /** Open Health/Watch streams: they never end by themselves and would hold a graceful shutdown. */
  private readonly watches = new Set<Ending>();

  constructor(private readonly server: Server) {}

  /**
   * The plugin is ready for calls: add Health, reporting SERVING. Loaded now,
   * after the socket is bound, because grpc-health-check parses its .proto
   * when imported, time every pod's start would otherwise spend before the
   * socket appears (grpc-js takes services after binding).
   */
  async serving(): Promise<void> {
    const { HealthImplementation } = await import("grpc-health-check");
    const health = new HealthImplementation(
      Object.fromEntries(HEALTH_SERVICES.map((s) => [s, this.stopped ? "NOT_SERVING" : "SERVING"])),
    );
    const tracking: HealthServer = {
      addService: (def, impl: HealthHandlers) => {
        const watch = impl["watch"] as ((call: Ending) => void) | undefined;
        const handlers = { ...impl };
        if (watch) {
          handlers["watch"] = (call: Ending) => {
            this.watches.add(call);
            const forget = () => this.watches.delete(call);
            call.on("cancelled", forget);
            call.on("finish", forget);
            watch(call);
          };
        }
        this.server.addService(def as unknown as ServiceDefinition, handlers);
      },
    };
    health.addToServer(tracking);
    this.health = health;
  }

  /** Server reflection: for people and tools (grpcurl), so loaded last, like Health. */
  async addReflection(): Promise<void> {
    const [{ ReflectionService }, { protoPath: healthProtoPath }, descriptors] = await Promise.all([
      import("@grpc/reflection"),
      import("grpc-health-check"),
      // CommonJS whose exports are built at run time: only its default (module.exports) has them.
      import("protobufjs/ext/descriptor/index.js").then((m) => m.default),
    ]);
    new ReflectionService(withGoCompatibleMapEntries(reflectedProtos(healthProtoPath), descriptors)).addToServer(
      this.server,
    );
  }

  /** Whether stopping() was called: the server's shutdown has begun. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Shutdown has begun: tell watchers NOT_SERVING, then end their streams so draining can finish. */
  stopping(): void {
    this.stopped = true;
    for (const s of HEALTH_SERVICES) this.health?.setStatus(s, "NOT_SERVING");
    for (const call of this.watches) call.end();
    this.watches.clear();
  }
}

/**
 * One package definition holding every service on the socket, loaded with
 * proto field names kept (keepCase) so reflection shows `input_artifact`, not
 * the camelCase names the handlers use.
 */
function reflectedProtos(healthProtoPath: string): ReturnType<typeof loadSync> {
  const files = [basename(PROTO_PATH), "health/v1/health.proto"];
  const includeDirs = [dirname(PROTO_PATH), join(dirname(healthProtoPath), "..", "..")];
  // The reflection service's own proto sits inside its package (not an exported
  // path); if a later release moves it, reflection still works, it just does
  // not list itself.
  const reflectionRoot = reflectionProtos();
  if (existsSync(join(reflectionRoot, REFLECTION_PROTO))) {
    files.push(REFLECTION_PROTO);
    includeDirs.push(reflectionRoot);
  }
  return loadSync(files, { keepCase: true, includeDirs });
}

/** The reflection package's proto folder: beside the bundle (scripts/bundle.mjs copies it), else in node_modules. */
function reflectionProtos(): string {
  const bundled = join(PACKAGE_ROOT, "dist", "vendor", "@grpc", "reflection", "build", "proto");
  if (existsSync(bundled)) return bundled;
  try {
    return join(dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")), "build", "proto");
  } catch {
    return bundled;
  }
}

type Descriptors = typeof import("protobufjs/ext/descriptor/index.js");
type MessageDescriptor = import("protobufjs/ext/descriptor/index.js").IDescriptorProto;
type FileDescriptor = import("protobufjs/ext/descriptor/index.js").IFileDescriptorProto;

/**
 * protobufjs names the synthetic message of a map field after the field
 * ("Statuses") where protoc names it "<Field>Entry" ("StatusesEntry"); Go's
 * descriptor validation, and so grpcurl, rejects the whole file otherwise
 * (health.proto's HealthListResponse.statuses). Rename those entries in the
 * serialized descriptors that reflection hands out.
 */
function withGoCompatibleMapEntries(
  def: ReturnType<typeof loadSync>,
  { FileDescriptorProto }: Descriptors,
): ReturnType<typeof loadSync> {
  const fixed = new Map<Buffer, Buffer>();
  const fix = (bin: Buffer): Buffer => {
    let out = fixed.get(bin);
    if (!out) {
      const file = FileDescriptorProto.decode(bin) as unknown as FileDescriptor;
      let changed = false;
      const visit = (m: MessageDescriptor): void => {
        for (const nested of m.nestedType ?? []) visit(nested);
        for (const field of m.field ?? []) {
          const entry = m.nestedType?.find((n) => n.options?.mapEntry && field.typeName?.split(".").pop() === n.name);
          const name = field.name ? mapEntryName(field.name) : undefined;
          if (!entry || !name || entry.name === name) continue;
          entry.name = name;
          field.typeName = field.typeName!.replace(/[^.]*$/, name);
          changed = true;
        }
      };
      for (const m of file.messageType ?? []) visit(m);
      out = changed ? Buffer.from(FileDescriptorProto.encode(file).finish()) : bin;
      fixed.set(bin, out);
    }
    return out;
  };
  for (const value of Object.values(def) as { fileDescriptorProtos?: unknown }[]) {
    if (Array.isArray(value.fileDescriptorProtos))
      value.fileDescriptorProtos = (value.fileDescriptorProtos as Buffer[]).map(fix);
  }
  return def;
}

/** protoc's rule: the field name in CamelCase (underscores dropped, next letter upper-cased) + "Entry". */
function mapEntryName(field: string): string {
  let out = "";
  let upper = true;
  for (const ch of field) {
    if (ch === "_") {
      upper = true;
      continue;
    }
    out += upper ? ch.toUpperCase() : ch;
    upper = false;
  }
  return `${out}Entry`;
}

const REFLECTION_PROTO = "grpc/reflection/v1/reflection.proto";
