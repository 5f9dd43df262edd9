// Multipart uploads the store creates after the plugin stopped waiting. A
// CreateMultipartUpload whose answer never came (timeout, connection lost after
// the request went out) may still be carried out, later, by a store that was
// stalled; the plugin never learns that upload's id, so its own abort path
// cannot reach it. After such a failure this watches the key for a while and
// aborts an upload only when it can be that lost one: same key, initiated no
// earlier than the failed attempt (minus clock slack), not an upload of this
// process, and still without a single stored part well after its creation (a
// live writer stores its first part within seconds). A bucket lifecycle rule
// (AbortIncompleteMultipartUpload) stays the backstop for what this misses,
// e.g. when the plugin exits first.
import type { StoreTarget } from "../store/port.js";

/** How the sweep is reported (main logs it). */
export type LateUploadEvent =
  | { event: "aborted"; bucket: string; key: string; uploadId: string; initiated: string }
  | { event: "failed"; bucket: string; key: string; error: string };

const CLOCK_SLACK_MS = 60_000;

/** The process's multipart uploads in flight, and the watch for lost ones. */
export class LateUploadWatch {
  /** Upload ids this process has started and not yet completed or aborted. */
  private readonly live = new Set<string>();

  /** `windowMs`: how long to watch a key (0 turns the watch off); `report`: what it did. */
  constructor(
    private readonly windowMs = 120_000,
    private readonly report: (e: LateUploadEvent) => void = () => undefined,
  ) {}

  started(uploadId: string): void {
    this.live.add(uploadId);
  }

  ended(uploadId: string): void {
    this.live.delete(uploadId);
  }

  /**
   * After an unanswered CreateMultipartUpload for `key` started at `attemptStartedMs`:
   * look every window/8 until window has passed, abort what matches. An upload
   * that appeared within the window but is still too young to judge is followed
   * until it is old enough (at most minAge past the window): one created late in
   * the window is not left behind. Never throws; timers do not keep the process alive.
   */
  watch(target: StoreTarget, key: string, attemptStartedMs: number): void {
    const window = this.windowMs;
    if (window === 0) return;
    const every = window / 8;
    const minAge = window / 4; // no part stored this long after creation: nobody is writing it
    const until = Date.now() + window;
    const aborted = new Set<string>();
    const look = async (): Promise<void> => {
      let young = false;
      try {
        young = await this.sweep(target, key, attemptStartedMs, minAge, aborted);
      } catch (e) {
        // The store may still be down; the next look retries. Only the last one reports.
        if (Date.now() + every > until)
          this.report({
            event: "failed",
            bucket: target.bucket,
            key,
            error: e instanceof Error ? e.message : String(e),
          });
      }
      const next = Date.now() + every;
      if (next <= until || (young && next <= until + minAge + every)) setTimeout(() => void look(), every).unref();
    };
    setTimeout(() => void look(), every).unref();
  }

  /**
   * Abort uploads of `key` that can be the lost one. `minAge`: no part stored this
   * long after creation: nobody is writing it. Returns whether one was seen that is
   * still younger than that.
   */
  private async sweep(
    target: StoreTarget,
    key: string,
    attemptStartedMs: number,
    minAge: number,
    aborted: Set<string>,
  ): Promise<boolean> {
    const pending = await target.store.pendingUploads(key, {});
    let young = false;
    for (const u of pending) {
      if (u.key !== key || this.live.has(u.uploadId) || aborted.has(u.uploadId)) continue;
      const initiated = u.initiated.getTime();
      if (initiated < attemptStartedMs - CLOCK_SLACK_MS) continue;
      if (Date.now() - initiated < minAge) {
        young = true;
        continue;
      }
      if (await target.store.hasParts(key, u.uploadId, {})) continue;
      await target.store.abortUpload(key, u.uploadId, {});
      aborted.add(u.uploadId);
      this.report({
        event: "aborted",
        bucket: target.bucket,
        key,
        uploadId: u.uploadId,
        initiated: u.initiated.toISOString(),
      });
    }
    return young;
  }
}
