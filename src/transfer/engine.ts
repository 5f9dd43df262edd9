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
import { readObject } from "./object-stream.js";
import { type ObjectInfo, headObject } from "./range-reader.js";
import { TaskGroup } from "./task-group.js";
import { type UploadResult, uploadFile, uploadStream } from "./upload.js";
import type { ShareGroup } from "../util/slots.js";

export type { DownloadOptions, ListedObject, ObjectInfo, Progress, StoreTarget, UploadResult };
export { TaskGroup };

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

  /** Files of one directory in flight at once (tuning.fileConcurrency), with one failure path. */
  fileGroup(signal: AbortSignal): TaskGroup {
    return new TaskGroup(this.ctx.tuning.fileConcurrency, signal);
  }
}
