// The transfer engine's front door. One engine per process holds what all
// RPCs share (the buffer budget, the late-upload watch); each RPC gets a Job
// for one target: its tuning as a value, its own share of the budget, its
// byte counter, the range slots its files share. Everything the artifact
// layer moves goes through a Job's methods.
import type { StoreTarget } from "../store/port.js";
import { Slots } from "../util/slots.js";
import { BufferBudget } from "./buffer-budget.js";
import { type DownloadOptions, downloadToFile } from "./download-to-file.js";
import type { JobContext, Progress } from "./job.js";
import { LateUploadWatch } from "./late-uploads.js";
import { type ListedObject, anyUnder, listPrefix } from "./listing.js";
import { type FileToSave, type Moved, type Placement, deletePrefix, forEachBounded } from "./prefixes.js";
import { readObject } from "./object-stream.js";
import { type ObjectInfo, headObject } from "./range-reader.js";
import { type UploadResult, uploadFile, uploadStream } from "./upload.js";
import type { ShareGroup } from "../util/slots.js";

export type {
  DownloadOptions,
  FileToSave,
  ListedObject,
  Moved,
  ObjectInfo,
  Placement,
  Progress,
  StoreTarget,
  UploadResult,
};

const MiB = 1024 * 1024;

export class TransferEngine {
  constructor(
    /** Every transfer buffer of the process comes from here (96 MiB when not given: in-process use). */
    readonly budget: BufferBudget = new BufferBudget(96 * MiB),
    readonly lateUploads: LateUploadWatch = new LateUploadWatch(),
  ) {}

  /** The objects under `prefix`, page by page (a million keys never become one array). */
  list(target: StoreTarget, prefix: string, signal: AbortSignal): AsyncGenerator<ListedObject> {
    return listPrefix(target, prefix, signal);
  }

  /** True when at least one object exists under `prefix` (one key asked for). */
  anyUnder(target: StoreTarget, prefix: string, signal: AbortSignal): Promise<boolean> {
    return anyUnder(target, prefix, signal);
  }

  /** Every key under `prefix` deleted (batches of 1,000 as the listing streams in); returns how many. */
  deletePrefix(target: StoreTarget, prefix: string, signal: AbortSignal): Promise<number> {
    return deletePrefix(target, prefix, signal);
  }

  /** The configuration's bucket, created when it asks for that (once per target). */
  ensureBucket(target: StoreTarget, signal: AbortSignal): Promise<void> {
    return target.store.ensureBucket(signal);
  }

  /**
   * The transfers of one RPC against `target`, counting into `progress`; with share groups, its
   * buffers count toward each group's cap (see BufferBudget.share).
   */
  job(target: StoreTarget, progress: Progress = { bytes: 0 }, groups: readonly ShareGroup[] = []): Job {
    const tuning = target.cfg.tuning;
    return new Job({
      target,
      tuning,
      buffers: this.budget.share(groups),
      progress,
      lateUploads: this.lateUploads,
      rangeSlots: new Slots(Math.max(tuning.partConcurrency, tuning.fileConcurrency)),
    });
  }
}

export class Job {
  constructor(private readonly ctx: JobContext) {}

  get target(): StoreTarget {
    return this.ctx.target;
  }

  /** Size, ETag and full-object CRC32 of `key`; a missing key is a "not-found" error. */
  head(key: string, signal: AbortSignal): Promise<ObjectInfo> {
    return headObject(this.ctx, key, signal);
  }

  download(key: string, dest: string, signal: AbortSignal, opts?: DownloadOptions): Promise<number> {
    return downloadToFile(this.ctx, key, dest, signal, opts);
  }

  /** The object's bytes in order, read ahead within a small window (OpenStream). */
  read(key: string, signal: AbortSignal): AsyncGenerator<Buffer> {
    return readObject(this.ctx, key, signal);
  }

  uploadFile(key: string, path: string, signal: AbortSignal, within?: string): Promise<UploadResult> {
    return uploadFile(this.ctx, key, path, signal, within);
  }

  uploadStream(key: string, chunks: AsyncIterable<Buffer>, signal: AbortSignal): Promise<UploadResult> {
    return uploadStream(this.ctx, key, chunks, signal);
  }

  /**
   * Every object under `prefix` to the path `place` gives it (none: passed over), fileConcurrency
   * at once, the listing read as slots free up. On a failure the files in flight settle and the
   * first failure is thrown; what was written is the caller's to remove.
   */
  downloadAll(prefix: string, place: Placement, signal: AbortSignal): Promise<Moved> {
    const ctx = this.ctx;
    return forEachBounded(
      ctx.tuning.fileConcurrency,
      signal,
      (s) => listPrefix(ctx.target, prefix, s),
      async (obj, s) => {
        const to = await place(obj, s);
        if (!to) return undefined;
        return downloadToFile(ctx, obj.key, to.path, s, { ...to.opts, known: { size: obj.size, etag: obj.etag } });
      },
    );
  }

  /** Every file of `files` to its key, fileConcurrency at once; each opened inside `within` (the real root). */
  uploadAll(files: AsyncIterable<FileToSave>, within: string, signal: AbortSignal): Promise<Moved> {
    const ctx = this.ctx;
    return forEachBounded(
      ctx.tuning.fileConcurrency,
      signal,
      () => files,
      async (f, s) => (await uploadFile(ctx, f.key, f.path, s, within)).bytes,
    );
  }
}
