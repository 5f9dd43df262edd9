// Runs the built plugin (`node dist/main.js <socket>`) as a child process, the
// way Argo does, and talks to it over its unix socket with a gRPC client made
// from the same proto. Captures everything the process writes, for the
// log-scanning tests.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, type ClientDuplexStream, Metadata, credentials, makeGenericClientConstructor } from "@grpc/grpc-js";
import { loadArtifactService } from "../../src/wire/proto.js";

export const ROOT = join(import.meta.dirname, "..", "..");

export interface PluginProcess {
  socket: string;
  proc: ChildProcess;
  client: ArtifactClient;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export async function startPlugin(env: Record<string, string> = {}, dir?: string): Promise<PluginProcess> {
  const base = dir ?? mkdtempSync(join(tmpdir(), "plugin-"));
  const socket = join(base, "artifact-plugins", "s3", "socket");
  const proc = spawn(process.execPath, [join(ROOT, "dist", "main.js"), socket], {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/root", LOG_LEVEL: "debug", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c.toString();
      if (out.includes('"msg":"ready"')) resolve();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    proc.once("exit", (code) => reject(new Error(`plugin exited with ${code} before ready:\n${out}`)));
    setTimeout(() => reject(new Error(`plugin not ready in 20 s:\n${out}`)), 20_000).unref();
  });
  await ready;
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const client = new ArtifactClient(socket);
  return {
    socket,
    proc,
    client,
    output: () => out,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      client.close();
      if (proc.exitCode === null) proc.kill(signal);
      const code = await exited;
      if (!dir) rmSync(base, { recursive: true, force: true });
      return code;
    },
  };
}

export interface Artifact {
  name?: string;
  plugin?: { name?: string; configuration?: string; key?: string };
}

export function artifact(configuration: string, key: string): Artifact {
  return { name: "art", plugin: { name: "s3", configuration, key } };
}

type Cb<T> = (err: (Error & { code?: number }) | null, res: T) => void;
interface RawClient extends Client {
  [method: string]: unknown;
}

/** Promise-shaped client; gRPC errors reject with their `code`. */
export class ArtifactClient {
  readonly raw: RawClient;

  constructor(socket: string) {
    const Ctor = makeGenericClientConstructor(loadArtifactService(), "ArtifactService");
    this.raw = new Ctor(`unix:${socket}`, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 4 * 1024 * 1024, // grpc-go's default, as Argo has it
    }) as unknown as RawClient;
  }

  close(): void {
    this.raw.close();
  }

  private unary<T>(method: string, req: unknown, deadlineMs = 120_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = this.raw[method] as (req: unknown, md: Metadata, opts: object, cb: Cb<T>) => void;
      fn.call(this.raw, req, new Metadata(), { deadline: Date.now() + deadlineMs }, (err: Error | null, res: T) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  load(a: Artifact, path: string) {
    return this.unary<{ success: boolean; error: string }>("Load", { inputArtifact: a, path });
  }
  save(a: Artifact, path: string) {
    return this.unary<{ success: boolean; error: string }>("Save", { outputArtifact: a, path });
  }
  delete(a: Artifact) {
    return this.unary<{ success: boolean; error: string }>("Delete", { artifact: a });
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

  /** All frames of an OpenStream call. Rejects with the gRPC error, if any. */
  openStream(a: Artifact, opts: { onFrame?: (len: number) => Promise<void> | void } = {}): Promise<{ frames: { data: Buffer; isEnd: boolean; error: string }[]; data: Buffer }> {
    return new Promise((resolve, reject) => {
      const fn = this.raw["OpenStream"] as (req: unknown) => NodeJS.ReadableStream & { cancel(): void };
      const call = fn.call(this.raw, { artifact: a });
      const frames: { data: Buffer; isEnd: boolean; error: string }[] = [];
      call.on("data", (f: { data: Buffer; isEnd: boolean; error: string }) => {
        frames.push(f);
        if (opts.onFrame) {
          call.pause();
          Promise.resolve(opts.onFrame(f.data.length)).then(() => call.resume(), reject);
        }
      });
      call.on("error", reject);
      call.on("end", () => resolve({ frames, data: Buffer.concat(frames.map((f) => f.data)) }));
    });
  }

  /** SaveStream as Argo v4.1 does it: one metadata frame, then chunks. */
  saveStream(a: Artifact, chunks: Iterable<Buffer> | AsyncIterable<Buffer>, opts: { cancelAfter?: number } = {}): Promise<{ success: boolean; error: string }> {
    return new Promise((resolve, reject) => {
      const fn = this.raw["SaveStream"] as (cb: Cb<{ success: boolean; error: string }>) => ClientDuplexStream<unknown, unknown> & { cancel(): void };
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
      })().catch(reject);
    });
  }
}
