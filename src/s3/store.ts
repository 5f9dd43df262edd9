// The only place S3 commands are built: the store port (src/store/port.ts)
// over the AWS SDK, one store per bucket, over the target's two clients
// (retrying, and single-attempt for OpenStream and CreateMultipartUpload,
// whose retries are decided above). SdkStore sends every request through the
// SDK; LeanStore sends GetObject and small PutObjects the lean way
// (lean-requests.ts) and the rest as SdkStore does. Methods send one request
// each, carry the configuration's server-side encryption and turn S3's answer
// into the port's types; every failure leaves as an S3Error (errors.ts):
// operation, bucket, key, endpoint, code, status and whether another attempt
// may help, as fields and in words.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutBucketEncryptionCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";

import type { Readable } from "node:stream";
import { DEFAULT_TUNING } from "../config/types.js";
import { PluginError } from "../errors.js";
import { rateWindowMs, tooSlow } from "../http/pace.js";
import type {
  CompletedPart,
  GetAnswer,
  GetInput,
  ListPage,
  NotDeleted,
  ObjectHead,
  PartStored,
  PendingUpload,
  SendOptions,
  SinkFor,
  Store,
  UploadStarted,
  Written,
} from "../store/port.js";
import { backoff } from "../util/backoff.js";
import { untilAborted } from "../util/abortable.js";
import type { Encryption, ReadSse, WriteSse } from "./encryption.js";
import { type S3Error, cancelledRequest, location, mayRetry, storageError } from "./errors.js";
import type { LeanRequests } from "./lean-requests.js";
import { type S3RequestEnded, publishS3Request, s3RequestObserved } from "./events.js";

export interface StoreOptions {
  bucket: string;
  /** The endpoint as people read it, for messages and log lines. */
  endpoint: string;
  retrying: S3Client;
  singleAttempt: S3Client;
  /** The configuration's server-side encryption: headers for every read and write, and the check of each write's answer. */
  encryption: Encryption;
  /** createBucketIfNotPresent, when the configuration asks for it. */
  createBucket?: { objectLocking: boolean; kmsKeyId: string | undefined } | undefined;
  /** Attempts of a lean PutObject (the SDK's own setting for its client). */
  maxAttempts?: number;
  /** The answer head's deadline and the window a body's rate is judged over (http/pace.ts). */
  requestTimeoutMs?: number;
  /** Slowest answer body accepted, bytes/s (http/pace.ts; default MIN_BODY_RATE). */
  minBodyRate?: number | undefined;
}

/** S3's own page size for listings, the most a page may hold. */
const MAX_PAGE_KEYS = 1000;

/** Buckets this process created whose settings (default encryption) are not in yet, by endpoint and bucket. */
const unsettled = new Set<string>();

/** What a PutObject answer says about encryption, whichever way it was sent. */
type PutAnswer = { ServerSideEncryption?: string | undefined; SSECustomerAlgorithm?: string | undefined };

/** The store port over the AWS SDK: every request a command of @aws-sdk/client-s3. */
export class SdkStore implements Store {
  readonly bucket: string;
  readonly endpoint: string;
  private readonly retrying: S3Client;
  private readonly singleAttempt: S3Client;
  protected readonly encryption: Encryption;
  private readonly createBucketOpts: StoreOptions["createBucket"];
  protected readonly maxAttempts: number;
  private readonly requestTimeoutMs: number;
  private readonly minBodyRate: number | undefined;
  /** createBucketIfNotPresent's check, once per store, shared by concurrent callers. */
  private ensured: Promise<void> | undefined;

  constructor(o: StoreOptions) {
    this.bucket = o.bucket;
    this.endpoint = o.endpoint;
    this.retrying = o.retrying;
    this.singleAttempt = o.singleAttempt;
    this.encryption = o.encryption;
    this.createBucketOpts = o.createBucket;
    this.maxAttempts = o.maxAttempts ?? 3;
    this.requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_TUNING.requestTimeoutMs;
    this.minBodyRate = o.minBodyRate;
  }

  location(key?: string): string {
    return location({ bucket: this.bucket, key, endpointLabel: this.endpoint });
  }

  cancelled(op: string, key: string, signal: AbortSignal): S3Error {
    return cancelledRequest(op, { bucket: this.bucket, key, endpointLabel: this.endpoint }, signal.reason);
  }

  /** `request`'s failure as an S3Error naming `op` and `key`. */
  protected async named<T>(op: string, key: string | undefined, o: SendOptions, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (e) {
      throw storageError(op, { bucket: this.bucket, key, endpointLabel: this.endpoint }, e, o.signal);
    }
  }

  async head(key: string, checksums: boolean, o: SendOptions): Promise<ObjectHead> {
    const sse = await this.encryption.forRead(key);
    const out = await this.named("HeadObject", key, o, () =>
      this.client(o).send(
        new HeadObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(checksums ? { ChecksumMode: "ENABLED" } : {}),
          ...sse,
        }),
        this.opts(o),
      ),
    );
    return { size: out.ContentLength ?? 0, etag: out.ETag, crc32: out.ChecksumCRC32, checksumType: out.ChecksumType };
  }

  /**
   * GetObject with its body poured into the buffers `sinkFor` hands out (one
   * attempt: the engine retries ranges itself).
   */
  async getInto(key: string, input: GetInput, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer> {
    const sse = await this.encryption.forRead(key);
    const op = input.Range ? `GetObject ${input.Range}` : "GetObject";
    return this.named(op, key, o, () => this.fetchInto(key, input, sse, o, sinkFor));
  }

  /**
   * The GetObject exchange itself, the SDK's way under the lean client's rules
   * (http/pace.ts): its head within the request timeout, its body at least
   * MIN_BODY_RATE over each window, never a byte past the sink or past the
   * length it announced. LeanStore sends it the lean way.
   */
  protected async fetchInto(
    key: string,
    input: GetInput,
    sse: ReadSse,
    o: SendOptions,
    sinkFor: SinkFor,
  ): Promise<GetAnswer> {
    const out = await this.client(o)
      .send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...input, ...sse }), {
        ...this.opts(o),
        requestTimeout: this.requestTimeoutMs,
      })
      .catch((e: unknown) => {
        // The handler's words name its own setting; say what happened and where.
        if ((e as { name?: string }).name !== "TimeoutError") throw e;
        throw Object.assign(
          new Error(
            `no complete answer head from ${this.endpoint} within ${Math.round(this.requestTimeoutMs / 1000)} s`,
          ),
          { code: "ETIMEDOUT" },
        );
      });
    const answer: GetAnswer = {
      ContentLength: out.ContentLength,
      ContentRange: out.ContentRange,
      ETag: out.ETag,
      ChecksumCRC32: out.ChecksumCRC32,
      ChecksumType: out.ChecksumType,
    };
    const announced = answer.ContentLength;
    const body = out.Body as Readable | undefined;
    const windowMs = rateWindowMs(this.requestTimeoutMs);
    let got = 0;
    let heldMs = 0;
    let holdingSince: number | undefined;
    const pace = setInterval(() => {
      const now = performance.now();
      const slow = tooSlow(
        got,
        windowMs,
        heldMs + (holdingSince !== undefined ? now - holdingSince : 0),
        this.minBodyRate,
      );
      got = heldMs = 0;
      if (holdingSince !== undefined) holdingSince = now;
      if (slow)
        body?.destroy(
          Object.assign(new Error(`the answer's body from ${this.endpoint} came at ${slow}`), { code: "ETIMEDOUT" }),
        );
    }, windowMs);
    pace.unref();
    try {
      const sink = sinkFor(answer);
      let received = 0;
      for await (const chunk of (body ?? []) as AsyncIterable<Buffer>) {
        received += chunk.length;
        got += chunk.length;
        if (announced !== undefined && received > announced)
          throw Object.assign(new Error(`the server sent more than the ${announced} bytes it announced`), {
            code: "EPROTO",
          });
        for (let off = 0; off < chunk.length;) {
          const dest = sink.space();
          const n = Math.min(dest.length, chunk.length - off);
          // A full sink: the body is longer than what was asked for (never written past it).
          if (n === 0)
            throw Object.assign(new Error("the answer's body is longer than what was asked for"), { code: "EPROTO" });
          chunk.copy(dest, 0, off, off + n);
          off += n;
          const pending = sink.took(n);
          if (pending) {
            // Time our own sink holds reading back is not the server's.
            holdingSince = performance.now();
            await pending;
            heldMs += performance.now() - holdingSince;
            holdingSince = undefined;
          }
        }
      }
      if (announced !== undefined && received !== announced)
        throw Object.assign(new Error(`the answer ended after ${received} of ${announced} bytes`), {
          code: "ECONNRESET",
        });
      return answer;
    } catch (e) {
      body?.destroy();
      throw e;
    } finally {
      clearInterval(pace);
    }
  }

  private client(o: SendOptions): S3Client {
    return o.single ? this.singleAttempt : this.retrying;
  }

  /**
   * Every exchange but an upload's has a deadline for its answer head (the
   * handler's requestTimeout; the socket timeout alone is an idle timer a
   * store dripping a byte at a time resets forever); its body is held to the
   * same time by the response cap (targets.ts). Uploads (PutObject, UploadPart)
   * send their body before the head can come and are paced by the socket.
   */
  private opts(o: SendOptions, upload = false): { abortSignal?: AbortSignal; requestTimeout?: number } {
    return {
      ...(o.signal ? { abortSignal: o.signal } : {}),
      ...(upload ? {} : { requestTimeout: this.requestTimeoutMs }),
    };
  }

  /** PutObject of a body in memory, with the configuration's encryption; the answer says whether it was confirmed. */
  async put(key: string, body: Buffer, crc32: string | undefined, o: SendOptions): Promise<Written> {
    const sse = await this.encryption.forWrite(key);
    const out = await this.named("PutObject", key, o, () => this.sendPut(key, body, crc32, sse, o));
    return { unencrypted: this.encryption.unconfirmed(out) };
  }

  /** The PutObject exchange itself, through the SDK (its retries); LeanStore sends some the lean way. */
  protected sendPut(
    key: string,
    body: Buffer,
    crc32: string | undefined,
    sse: WriteSse,
    o: SendOptions,
  ): Promise<PutAnswer> {
    return this.client(o).send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ...(crc32 ? { ChecksumCRC32: crc32 } : {}),
        ...sse,
      }),
      this.opts(o, true),
    );
  }

  async createUpload(key: string, checksums: boolean, o: SendOptions): Promise<UploadStarted> {
    const sse = await this.encryption.forWrite(key);
    const out = await this.named("CreateMultipartUpload", key, o, () =>
      this.client(o).send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          ...(checksums ? { ChecksumAlgorithm: "CRC32", ChecksumType: "FULL_OBJECT" } : {}),
          ...sse,
        }),
        this.opts(o),
      ),
    );
    return { uploadId: out.UploadId, unencrypted: this.encryption.unconfirmed(out) };
  }

  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Buffer,
    crc32: string | undefined,
    o: SendOptions,
  ): Promise<PartStored> {
    const sse = await this.encryption.forRead(key); // SSE-C: the key again; the rest is the upload's
    const out = await this.named(`UploadPart ${partNumber}`, key, o, () =>
      this.client(o).send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ChecksumCRC32: crc32,
          ...sse,
        }),
        this.opts(o, true),
      ),
    );
    return { etag: out.ETag, unencrypted: this.encryption.unconfirmed(out) };
  }

  async completeUpload(
    key: string,
    uploadId: string,
    parts: readonly CompletedPart[],
    crc32: string | undefined,
    o: SendOptions,
  ): Promise<Written> {
    const sse = await this.encryption.forRead(key);
    const Parts = parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag, ChecksumCRC32: p.crc32 }));
    const out = await this.named("CompleteMultipartUpload", key, o, () =>
      this.client(o).send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts },
          ...(crc32 ? { ChecksumCRC32: crc32, ChecksumType: "FULL_OBJECT" as const } : {}),
          ...sse,
        }),
        this.opts(o),
      ),
    );
    return { unencrypted: this.encryption.unconfirmed(out) };
  }

  async abortUpload(key: string, uploadId: string, o: SendOptions): Promise<void> {
    await this.named("AbortMultipartUpload", key, o, () =>
      this.client(o).send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
        this.opts(o),
      ),
    );
  }

  async pendingUploads(prefix: string, o: SendOptions): Promise<PendingUpload[]> {
    const out = await this.named("ListMultipartUploads", prefix, o, () =>
      this.client(o).send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix }), this.opts(o)),
    );
    const pending: PendingUpload[] = [];
    for (const u of out.Uploads ?? [])
      if (u.Key !== undefined && u.UploadId && u.Initiated)
        pending.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated });
    return pending;
  }

  async hasParts(key: string, uploadId: string, o: SendOptions): Promise<boolean> {
    // SSE-C uploads may need their key to be listed (S3 asks for it with checksummed uploads).
    const sse = await this.encryption.forRead(key);
    const out = await this.named("ListParts", key, o, () =>
      this.client(o).send(
        new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MaxParts: 1, ...sse }),
        this.opts(o),
      ),
    );
    return (out.Parts ?? []).length > 0;
  }

  async listPage(prefix: string, token: string | undefined, maxKeys: number, o: SendOptions): Promise<ListPage> {
    const asked = Math.min(maxKeys, MAX_PAGE_KEYS);
    const page = await this.named("ListObjectsV2", prefix, o, () =>
      this.client(o).send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: asked }),
        this.opts(o),
      ),
    );
    const got = (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
    if (got > asked)
      throw new PluginError(
        "storage",
        `ListObjectsV2 ${this.location(prefix)}: the store answered ${got} keys where at most ${asked} were asked for; refused (is the endpoint an S3 server?)`,
      );
    const objects = [];
    for (const c of page.Contents ?? [])
      if (c.Key !== undefined) objects.push({ key: c.Key, size: c.Size ?? 0, etag: c.ETag });
    return { objects, next: page.IsTruncated ? page.NextContinuationToken : undefined };
  }

  async deleteObject(key: string, o: SendOptions): Promise<void> {
    await this.named("DeleteObject", key, o, () =>
      this.client(o).send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), this.opts(o)),
    );
  }

  async deleteObjects(keys: readonly string[], prefix: string, o: SendOptions): Promise<NotDeleted[]> {
    const Objects = keys.map((Key) => ({ Key }));
    const out = await this.named("DeleteObjects", prefix, o, () =>
      this.client(o).send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects, Quiet: true } }),
        this.opts(o),
      ),
    );
    return (out.Errors ?? []).map((e) => ({ key: e.Key ?? "", code: e.Code, message: e.Message }));
  }

  /**
   * createBucketIfNotPresent, once per store per process. The check is shared
   * by concurrent callers, so it runs on no caller's cancellation (its requests
   * are bounded by the request timeout); each caller waits on its own signal.
   */
  ensureBucket(signal: AbortSignal): Promise<void> {
    const opts = this.createBucketOpts;
    if (!opts) return Promise.resolve();
    if (!this.ensured) {
      const p = this.createBucket(opts.objectLocking, opts.kmsKeyId, new AbortController().signal);
      this.ensured = p;
      p.catch(() => (this.ensured = undefined));
    }
    return untilAborted(this.ensured, signal);
  }

  // Creation and its settings are one step: a bucket this process created whose
  // settings did not go in is not ready, and the next Save tries them again (or fails again).
  private async createBucket(objectLocking: boolean, kmsKeyId: string | undefined, signal: AbortSignal): Promise<void> {
    const id = `${this.endpoint}\0${this.bucket}`;
    const o = { signal };
    try {
      await this.named("HeadBucket", undefined, o, () =>
        this.client(o).send(new HeadBucketCommand({ Bucket: this.bucket }), this.opts(o)),
      );
      // Created by this process earlier but its settings failed: finish them, or fail again.
      if (unsettled.has(id)) await this.applyBucketSettings(kmsKeyId, signal, id);
      return;
    } catch (e) {
      if (!(e instanceof PluginError && e.kind === "not-found")) throw e;
    }
    try {
      await this.named("CreateBucket", undefined, o, () =>
        this.client(o).send(
          new CreateBucketCommand({ Bucket: this.bucket, ObjectLockEnabledForBucket: objectLocking || undefined }),
          this.opts(o),
        ),
      );
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "BucketAlreadyOwnedByYou" || code === "BucketAlreadyExists") return;
      throw e;
    }
    unsettled.add(id);
    await this.applyBucketSettings(kmsKeyId, signal, id);
  }

  private async applyBucketSettings(kmsKeyId: string | undefined, signal: AbortSignal, id: string): Promise<void> {
    const mode = this.encryption.mode;
    if (mode === "sse-s3" || mode === "sse-kms") {
      const o = { signal };
      const rule =
        mode === "sse-kms"
          ? { SSEAlgorithm: "aws:kms" as const, KMSMasterKeyID: kmsKeyId }
          : { SSEAlgorithm: "AES256" as const };
      try {
        await this.named("PutBucketEncryption", undefined, o, () =>
          this.client(o).send(
            new PutBucketEncryptionCommand({
              Bucket: this.bucket,
              ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: rule }] },
            }),
            this.opts(o),
          ),
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
    unsettled.delete(id);
  }
}

/**
 * The store port with GetObject and small PutObjects the lean way
 * (lean-requests.ts, where targets.ts found it exactly equivalent to the
 * SDK's request); every other request as SdkStore sends it.
 */
export class LeanStore extends SdkStore {
  constructor(
    o: StoreOptions,
    private readonly lean: LeanRequests,
  ) {
    super(o);
  }

  protected override fetchInto(
    key: string,
    input: GetInput,
    sse: ReadSse,
    o: SendOptions,
    sinkFor: SinkFor,
  ): Promise<GetAnswer> {
    return this.leanLogged({ s3: "GetObject", key, range: input.Range, attempts: 1 }, input.Range ? 206 : 200, () =>
      this.lean.get(key, input, sse, o.signal, sinkFor),
    );
  }

  /** With its CRC32 the lean way, retried here as the SDK would (5xx, throttling, no answer); without, as SdkStore. */
  protected override async sendPut(
    key: string,
    body: Buffer,
    crc32: string | undefined,
    sse: WriteSse,
    o: SendOptions,
  ): Promise<PutAnswer> {
    if (!crc32) return super.sendPut(key, body, crc32, sse, o);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.leanLogged({ s3: "PutObject", key, attempts: attempt }, 200, () =>
          this.lean.put(key, body, crc32, sse, o.signal),
        );
      } catch (e) {
        if (!mayRetry(e, o.signal) || o.single || attempt >= this.maxAttempts) throw e;
        await backoff(attempt);
      }
    }
  }

  /** One S3RequestEnded per lean request, as targets.ts's middleware publishes for the SDK's. */
  private async leanLogged<T>(
    fields: { s3: string; key: string; range?: string | undefined; attempts: number },
    okStatus: number,
    send: () => Promise<T>,
  ): Promise<T> {
    if (!s3RequestObserved()) return send();
    const started = process.hrtime.bigint();
    const line = (extra: Pick<S3RequestEnded, "status" | "error" | "detail">) =>
      publishS3Request({
        ...fields,
        via: "lean",
        bucket: this.bucket,
        endpoint: this.endpoint,
        ms: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10,
        ...extra,
      });
    try {
      const out = await send();
      line({ status: okStatus });
      return out;
    } catch (e) {
      const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      line({ status: err.$metadata?.httpStatusCode, error: err.name, detail: err.message?.slice(0, 200) });
      throw e;
    }
  }
}
