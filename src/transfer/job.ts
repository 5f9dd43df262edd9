// What one RPC's transfers run with, handed down explicitly: where (the
// target), how (its tuning, as a value), from what memory (the RPC's share of
// the buffer budget), what they count (bytes moved, for progress lines) and
// the process's late-upload watch. The engine's modules read nothing global.
import type { Tuning } from "../config/types.js";
import type { StoreTarget } from "../store/port.js";
import type { Slots } from "../util/slots.js";
import type { Buffers } from "./buffer-budget.js";
import type { LateUploadWatch } from "./late-uploads.js";

/** Bytes moved by one RPC so far. */
export interface Progress {
  bytes: number;
}

export interface JobContext {
  readonly target: StoreTarget;
  readonly tuning: Readonly<Tuning>;
  readonly buffers: Buffers;
  readonly progress: Progress;
  readonly lateUploads: LateUploadWatch;
  /**
   * Ranged GETs in flight for the whole job: one large file still gets its
   * partConcurrency, many files of a directory Load do not multiply it by
   * fileConcurrency.
   */
  readonly rangeSlots: Slots;
}
