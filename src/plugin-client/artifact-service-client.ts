// A promise-shaped gRPC client for the plugin's socket, speaking the same
// proto as Argo. Used by the demo, the benchmark and the tests; it is how a
// person (or a script) talks to a running plugin without Argo.
import {
  type Client,
  type ClientDuplexStream,
  Metadata,
  credentials,
  loadPackageDefinition,
  makeGenericClientConstructor,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { loadArtifactService } from "../wire/proto.js";

export interface Artifact {
  name?: string;
  plugin?: { name?: string; configuration?: string; key?: string };
}

export function artifact(configuration: string, key: string): Artifact {
  return { name: "art", plugin: { name: "s3", configuration, key } };
}

type Cb<T> = (err: (Error & { code?: number }) | null, res: T) => void;

export interface SuccessReply {
  success: boolean;
  error: string;
}
export interface StreamFrame {
  data: Buffer;
  isEnd: boolean;
  error: string;
}
interface HealthClient extends Client {
  check(req: { service: string }, md: Metadata, opts: object, cb: Cb<{ status: string }>): void;
}
interface RawClient extends Client {
  [method: string]: unknown;
}

/** Promise-shaped client; gRPC errors reject with their `code`. */
export class ArtifactClient {
  readonly raw: RawClient;
  private readonly target: string;

  /** `deadlineMs` bounds each unary call (default: one hour, for large transfers). */
  constructor(
    socket: string,
    private readonly deadlineMs = 3_600_000,
  ) {
    const Ctor = makeGenericClientConstructor(loadArtifactService(), "ArtifactService");
    this.target = `unix:${socket}`;
    this.raw = new Ctor(this.target, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 4 * 1024 * 1024, // grpc-go's default, as Argo has it
    }) as unknown as RawClient;
  }

  close(): void {
    this.raw.close();
    this.healthClient?.close();
  }

  private healthClient: HealthClient | undefined;

  /** grpc.health.v1 Check of `service` ("" is the whole server), as a liveness probe asks it. */
  health(service = ""): Promise<{ status: string }> {
    if (!this.healthClient) {
      const def = loadSync(healthProtoPath, { keepCase: false, enums: String, defaults: true });
      const pkg = loadPackageDefinition(def) as unknown as {
        grpc: {
          health: { v1: { Health: new (a: string, c: ReturnType<typeof credentials.createInsecure>) => HealthClient } };
        };
      };
      this.healthClient = new pkg.grpc.health.v1.Health(this.target, credentials.createInsecure());
    }
    const c: HealthClient = this.healthClient;
    return new Promise((resolve, reject) =>
      c.check({ service }, new Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  private unary<T>(method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = this.raw[method] as (req: unknown, md: Metadata, opts: object, cb: Cb<T>) => void;
      fn.call(this.raw, req, new Metadata(), { deadline: Date.now() + this.deadlineMs }, (err: Error | null, res: T) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  load(a: Artifact, path: string) {
    return this.unary<SuccessReply>("Load", { inputArtifact: a, path });
  }
  save(a: Artifact, path: string) {
    return this.unary<SuccessReply>("Save", { outputArtifact: a, path });
  }
  delete(a: Artifact) {
    return this.unary<SuccessReply>("Delete", { artifact: a });
  }
  listObjects(a: Artifact) {
    return this.unary<{ objects: string[]; error: string }>("ListObjects", { artifact: a });
  }
  isDirectory(a: Artifact) {
    return this.unary<{ isDirectory: boolean; error: string }>("IsDirectory", { artifact: a });
  }
  getCapabilities() {
    return this.unary<{ supportsSaveStream: boolean }>("GetCapabilities", {});
  }

  /**
   * All frames of an OpenStream call. Rejects with the gRPC error, if any.
   * `onFrame` runs per frame with reading paused until it settles (a slow
   * consumer); `discard` keeps no data, only the frames' metadata.
   */
  openStream(
    a: Artifact,
    opts: { onFrame?: (len: number) => Promise<void> | void; discard?: boolean } = {},
  ): Promise<{ frames: StreamFrame[]; data: Buffer }> {
    return new Promise((resolve, reject) => {
      const fn = this.raw["OpenStream"] as (req: unknown) => NodeJS.ReadableStream & { cancel(): void };
      const call = fn.call(this.raw, { artifact: a });
      const frames: StreamFrame[] = [];
      call.on("data", (f: StreamFrame) => {
        const len = f.data.length;
        frames.push(opts.discard ? { ...f, data: Buffer.alloc(0) } : f);
        if (opts.onFrame) {
          call.pause();
          Promise.resolve(opts.onFrame(len)).then(() => call.resume(), reject);
        }
      });
      call.on("error", reject);
      call.on("end", () => resolve({ frames, data: Buffer.concat(frames.map((f) => f.data)) }));
    });
  }

  /**
   * OpenStream frame by frame: the next frame is read only when the consumer
   * asks for it, so a slow consumer (a pipe, a disk) slows the plugin down
   * through HTTP/2 flow control instead of piling frames up in memory. Leaving
   * the loop early cancels the call. Throws the gRPC error, if any.
   */
  async *openStreamFrames(a: Artifact): AsyncGenerator<StreamFrame, void, undefined> {
    const fn = this.raw["OpenStream"] as (req: unknown) => AsyncIterable<StreamFrame> & { cancel(): void };
    const call = fn.call(this.raw, { artifact: a });
    try {
      for await (const f of call) yield f;
    } finally {
      call.cancel(); // no-op after a clean end
    }
  }

  /** SaveStream as Argo v4.1 does it: one metadata frame, then chunks. */
  saveStream(
    a: Artifact,
    chunks: Iterable<Buffer> | AsyncIterable<Buffer>,
    opts: { cancelAfter?: number } = {},
  ): Promise<SuccessReply> {
    return new Promise((resolve, reject) => {
      const fn = this.raw["SaveStream"] as (
        cb: Cb<SuccessReply>,
      ) => ClientDuplexStream<unknown, unknown> & { cancel(): void };
      const call = fn.call(this.raw, (err, res) => (err ? reject(err) : resolve(res)));
      (async () => {
        call.write({ outputArtifact: a });
        let sent = 0;
        for await (const c of chunks) {
          if (opts.cancelAfter !== undefined && sent >= opts.cancelAfter) {
            call.cancel();
            return;
          }
          if (!call.write({ chunk: c })) await new Promise((r) => call.once("drain", r));
          sent += c.length;
        }
        call.end();
      })().catch((e: unknown) => {
        // The source failed (e.g. a read error): cancel so the plugin aborts the upload.
        call.cancel();
        reject(e);
      });
    });
  }
}
