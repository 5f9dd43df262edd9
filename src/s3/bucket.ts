// createBucketIfNotPresent: the bucket made once per configuration and
// process, with its settings (object locking, default encryption). Creation and
// its settings are one step: a bucket this process created whose settings did
// not go in is not ready, and the next Save tries them again (or fails again).
import { PluginError } from "../errors.js";
import { untilAborted } from "../util/abortable.js";
import type { S3Target } from "./client.js";
import { S3Error } from "./errors.js";

export class BucketSetup {
  private readonly ensured = new WeakMap<S3Target, Promise<void>>();
  /** Buckets this process created whose settings (default encryption) are not in yet. */
  private readonly unsettled = new Set<string>();

  /**
   * createBucketIfNotPresent, once per target per process. The check is shared
   * by concurrent callers, so it runs on no caller's cancellation (its requests
   * are bounded by the request timeout); each caller waits on its own signal.
   */
  ensure(t: S3Target, signal: AbortSignal): Promise<void> {
    const opts = t.cfg.createBucketIfNotPresent;
    if (!opts) return Promise.resolve();
    let p = this.ensured.get(t);
    if (!p) {
      p = this.create(t, opts.objectLocking, new AbortController().signal);
      this.ensured.set(t, p);
      p.catch(() => this.ensured.delete(t));
    }
    return untilAborted(p, signal);
  }

  private async create(t: S3Target, objectLocking: boolean, signal: AbortSignal): Promise<void> {
    const id = `${t.endpointLabel}\0${t.bucket}`;
    try {
      await t.store.headBucket({ signal });
      // Created by this process earlier but its settings failed: finish them, or fail again.
      if (this.unsettled.has(id)) await this.applySettings(t, signal, id);
      return;
    } catch (e) {
      if (!(e instanceof S3Error && e.kind === "not-found")) throw e;
    }
    try {
      await t.store.createBucket(objectLocking, { signal });
    } catch (e) {
      if (!(e instanceof S3Error && (e.code === "BucketAlreadyOwnedByYou" || e.code === "BucketAlreadyExists")))
        throw e;
      return;
    }
    this.unsettled.add(id);
    await this.applySettings(t, signal, id);
  }

  /** Creation and its settings are one step: until the settings are in, the bucket is not ready. */
  private async applySettings(t: S3Target, signal: AbortSignal, id: string): Promise<void> {
    const mode = t.encryption.mode;
    if (mode === "sse-s3" || mode === "sse-kms") {
      const kmsKeyId = t.cfg.encryptionOptions?.kmsKeyId;
      try {
        await t.store.putBucketEncryption(
          {
            Rules: [
              {
                ApplyServerSideEncryptionByDefault:
                  mode === "sse-kms"
                    ? { SSEAlgorithm: "aws:kms", KMSMasterKeyID: kmsKeyId }
                    : { SSEAlgorithm: "AES256" },
              },
            ],
          },
          { signal },
        );
      } catch (e) {
        if (!(e instanceof PluginError)) throw e;
        throw new PluginError(
          e.kind,
          `${e.message}; the bucket was created but its default encryption could not be set, so nothing is saved to it until that succeeds (or create the bucket with its encryption yourself)`,
          { cause: e },
        );
      }
    }
    this.unsettled.delete(id);
  }
}
