// Argo's artifact semantics on top of the transfer engine: what a key means
// (object or directory prefix), how a local path maps to keys, what counts as
// not found. Mirrors the built-in S3 driver (see README "Semantics"), with
// directories moved in parallel instead of one file at a time.
import { lstat, mkdir, realpath, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { ConfigCache } from "../config/parse.js";
import type { PluginConfig } from "../config/types.js";
import { Lru } from "../util/lru.js";
import type { ShareGroup } from "../util/slots.js";
import { localReadProblem } from "../util/local-access.js";
import { PluginError } from "../errors.js";
import { type FileToSave, type Job, type Progress, type StoreTarget, TransferEngine } from "../transfer/engine.js";
import { directoryPrefix, keyForFile, localPathFor } from "./keys.js";
import { mkdirInside } from "./local-dirs.js";
import { type WalkStats, walkFiles } from "./walk.js";

/** ListObjects answers in one message, under grpc-go's 4 MiB receive limit. */
const MAX_LISTED_KEYS = 100_000;
const MAX_LISTED_BYTES = 3 * 1024 * 1024;

/** What the service needs of an artifact; the wire layer builds it from Argo's message. */
export interface ArtifactRef {
  name: string;
  configuration: string;
  key: string;
}

/**
 * One RPC as the service sees it, once admitted: its cancellation, its byte counter (for progress
 * lines) and the groups its transfer buffers count in (the shared sidecar's fair shares).
 */
export interface Call {
  signal: AbortSignal;
  progress?: Progress;
  shares?: readonly ShareGroup[];
}

/** What a call runs on: the artifact's target (resolved by resolve(), admitted by the wire) and its key. */
export interface Admitted {
  target: StoreTarget;
  key: string;
}

/** Where a configuration's target comes from (s3/targets.ts's factory, built in services.ts). */
export interface TargetSource {
  get(configured: PluginConfig, configText: string): Promise<StoreTarget>;
}

/** Outcome figures for the per-RPC log line. */
export interface TransferSummary {
  bucket: string;
  key: string;
  kind: "file" | "directory";
  bytes: number;
  files: number;
  skippedSymlinks?: number;
}

/** A directory's files with the keys Argo gives them (key/relative path). */
async function* filesToSave(key: string, path: string, stats: WalkStats): AsyncGenerator<FileToSave> {
  for await (const f of walkFiles(path, stats)) yield { key: keyForFile(key, f.rel), path: f.path };
}

export class ArtifactService {
  constructor(
    private readonly targets: TargetSource,
    private readonly engine = new TransferEngine(),
    private readonly configs = new ConfigCache(),
  ) {}

  /**
   * The artifact's target: its configuration parsed (cached) and the S3 target for it. The wire
   * resolves a call's artifact first, admits the call on the target (its slot and fair shares),
   * and only then runs the operation.
   */
  async resolve(artifact: ArtifactRef): Promise<StoreTarget> {
    const cfg = this.configs.get(artifact.configuration);
    return this.targets.get(cfg, artifact.configuration);
  }

  /** The call's transfers against its target. */
  private job(a: Admitted, call: Call): Job {
    return this.engine.job(a.target, call.progress, call.shares ?? []);
  }

  async load(a: Admitted, path: string, call: Call): Promise<TransferSummary> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    const summary = (kind: TransferSummary["kind"], bytes: number, files: number): TransferSummary => ({
      bucket: t.bucket,
      key,
      kind,
      bytes,
      files,
    });
    if (key !== "" && !key.endsWith("/")) {
      let info;
      try {
        info = await job.head(key, signal);
      } catch (e) {
        if (!(e instanceof PluginError && e.kind === "not-found")) throw e;
      }
      if (info) {
        await mkdir(dirname(path), { recursive: true });
        const bytes = await job.download(key, path, signal, { known: info });
        return summary("file", bytes, 1);
      }
    }
    const prefix = directoryPrefix(key);
    if (!(await this.engine.anyUnder(t, prefix, signal))) throw this.notFound(t, key);
    const { bytes, files } = await this.loadDirectory(job, prefix, path, signal);
    return summary("directory", bytes, files);
  }

  private notFound(t: StoreTarget, key: string): PluginError {
    return new PluginError(
      "not-found",
      `artifact not found: no object s3://${t.bucket}/${key} and no objects under s3://${t.bucket}/${directoryPrefix(key)} (endpoint ${t.endpointLabel})`,
    );
  }

  private async loadDirectory(
    job: Job,
    prefix: string,
    root: string,
    signal: AbortSignal,
  ): Promise<{ bytes: number; files: number }> {
    const existed = await lstat(root).then(
      () => true,
      () => false,
    );
    await mkdir(root, { recursive: true });
    // In a target that existed, every file is checked to land inside it (see openTemp).
    const realRoot = existed ? await realpath(root) : undefined;
    // Directories already made, so each file does not cost a mkdir (bounded: an LRU, not a set of all).
    const made = new Lru<string, true>(4096);
    try {
      return await job.downloadAll(
        prefix,
        async (obj) => {
          // Console-made "folder" markers are not files (Argo skips them too).
          if (obj.key.endsWith("/")) return undefined;
          const local = localPathFor(root, prefix, obj.key);
          const parent = dirname(local);
          if (!made.get(parent)) {
            if (existed) await mkdirInside(root, parent);
            else await mkdir(parent, { recursive: true });
            made.set(parent, true);
          }
          // Small files are written in place (no temporary sibling, no rename) only in a target
          // this call created, which a failure removes whole. In one that existed, a write that
          // fails halfway (disk full) must not leave a damaged copy of the file that was there.
          return { path: local, opts: { inPlace: !existed, within: realRoot } };
        },
        signal,
      );
    } catch (e) {
      // Leave nothing half-loaded behind: Argo would otherwise see a partial directory.
      if (!existed) await rm(root, { recursive: true, force: true });
      throw e;
    }
  }

  async save(a: Admitted, path: string, call: Call): Promise<TransferSummary> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    let st;
    try {
      st = await stat(path);
    } catch (e) {
      throw new PluginError("local", `cannot save ${path} to ${t.store.location(key)}: ${localReadProblem(path, e)}`);
    }
    await this.engine.ensureBucket(t, signal);
    if (st.isFile()) {
      if (key === "" || key.endsWith("/")) {
        throw new PluginError(
          "invalid-argument",
          `cannot save file ${path}: key "${key}" is empty or ends with "/"; a file needs an object key`,
        );
      }
      const { bytes } = await job.uploadFile(key, path, signal);
      return { bucket: t.bucket, key, kind: "file", bytes, files: 1 };
    }
    if (!st.isDirectory()) throw new PluginError("local", `cannot save ${path}: not a regular file or directory`);
    const stats: WalkStats = { skippedSymlinks: 0, skippedOther: 0 };
    // Files are opened without following links and checked to be inside the real root.
    const root = await realpath(path);
    const { bytes, files } = await job.uploadAll(filesToSave(key, path, stats), root, signal);
    return { bucket: t.bucket, key, kind: "directory", bytes, files, skippedSymlinks: stats.skippedSymlinks };
  }

  async saveStream(a: Admitted, chunks: AsyncIterable<Buffer>, call: Call): Promise<TransferSummary> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    if (key === "" || key.endsWith("/")) {
      throw new PluginError(
        "invalid-argument",
        `cannot stream to key "${key}": empty or ends with "/"; a stream needs an object key`,
      );
    }
    await this.engine.ensureBucket(t, signal);
    const { bytes } = await job.uploadStream(key, chunks, signal);
    return { bucket: t.bucket, key, kind: "file", bytes, files: 1 };
  }

  async delete(a: Admitted, call: Call): Promise<{ bucket: string; key: string; files: number }> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    // Artifact GC sends a directory artifact's key without its trailing "/" (Argo's
    // built-in driver then deletes nothing, argo-workflows#14387): when no object has
    // the key but objects exist under key/, the prefix is what the artifact was.
    const prefixOnly =
      key !== "" &&
      !key.endsWith("/") &&
      !(await this.objectExists(job, key, signal)) &&
      (await this.engine.anyUnder(t, directoryPrefix(key), signal));
    if (!key.endsWith("/") && !prefixOnly) {
      await t.store.deleteObject(key, { signal });
      return { bucket: t.bucket, key, files: 1 };
    }
    const files = await this.engine.deletePrefix(t, directoryPrefix(key), signal);
    return { bucket: t.bucket, key, files };
  }

  async listObjects(a: Admitted, call: Call): Promise<string[]> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    const out: string[] = [];
    let bytes = 0;
    for await (const obj of this.engine.list(t, directoryPrefix(key), signal)) {
      if (obj.key.endsWith("/")) continue;
      out.push(obj.key);
      // The answer is one gRPC message (4 MiB at most for Argo's client); an endless
      // listing must not grow the process without bound either.
      bytes += Buffer.byteLength(obj.key) + 4;
      if (out.length > MAX_LISTED_KEYS || bytes > MAX_LISTED_BYTES) {
        throw new PluginError(
          "storage",
          `ListObjects ${t.store.location(directoryPrefix(key))}: more than ${out.length > MAX_LISTED_KEYS ? `${MAX_LISTED_KEYS} objects` : `${MAX_LISTED_BYTES / 1024 / 1024} MiB of keys`}, more than one answer can carry; list a narrower key`,
        );
      }
    }
    if (out.length === 0 && !(await this.objectExists(job, key, signal))) throw this.notFound(t, key);
    return out;
  }

  async isDirectory(a: Admitted, call: Call): Promise<boolean> {
    return this.engine.anyUnder(a.target, directoryPrefix(a.key), call.signal);
  }

  /** The object's bytes in order; a directory or a missing key is an error. */
  async openStream(
    a: Admitted,
    call: Call,
  ): Promise<{ bucket: string; key: string; chunks: AsyncIterableIterator<Buffer> }> {
    const job = this.job(a, call);
    const { signal } = call;
    const t = job.target;
    const key = a.key;
    const chunks = job.read(key, signal);
    // Pull the first range now so "not found" is reported before any frame is sent.
    const first = await chunks.next().catch(async (e: unknown) => {
      if (
        e instanceof PluginError &&
        e.kind === "not-found" &&
        (await this.engine.anyUnder(t, directoryPrefix(key), signal))
      ) {
        throw new PluginError(
          "invalid-argument",
          `s3://${t.bucket}/${key} is a directory (objects exist under ${directoryPrefix(key)}); OpenStream streams single objects only`,
        );
      }
      if (e instanceof PluginError && e.kind === "not-found") throw this.notFound(t, key);
      throw e;
    });
    // The reader holds budget buffers while suspended at a yield. Calling return() on this
    // iterator closes the reader in every state, including before the first pull (a
    // generator wrapper would skip its finally then, and leak the first range's buffer).
    let head: IteratorResult<Buffer> | undefined = first;
    const iterator: AsyncIterableIterator<Buffer> = {
      next: () => {
        const h = head;
        head = undefined;
        return h ? Promise.resolve(h) : chunks.next();
      },
      return: async () => {
        head = undefined;
        await chunks.return(undefined);
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return { bucket: t.bucket, key, chunks: iterator };
  }

  private async objectExists(job: Job, key: string, signal: AbortSignal): Promise<boolean> {
    if (key === "" || key.endsWith("/")) return false;
    try {
      await job.head(key, signal);
      return true;
    } catch (e) {
      if (e instanceof PluginError && e.kind === "not-found") return false;
      throw e;
    }
  }
}
