// The only place S3 commands are built: one store per bucket, over the
// target's two clients (retrying, and single-attempt for OpenStream and
// CreateMultipartUpload, whose retries are decided above). Methods send one
// request each and return the SDK's answer; every failure leaves as an
// S3Error (errors.ts): operation, bucket, key, endpoint, code, status and
// whether another attempt may help, as fields and in words.
import {
  AbortMultipartUploadCommand,
  type AbortMultipartUploadCommandOutput,
  CompleteMultipartUploadCommand,
  type CompleteMultipartUploadCommandInput,
  type CompleteMultipartUploadCommandOutput,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type CreateMultipartUploadCommandOutput,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandInput,
  type HeadObjectCommandOutput,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  type ListPartsCommandInput,
  type ListPartsCommandOutput,
  PutBucketEncryptionCommand,
  type PutBucketEncryptionCommandInput,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandInput,
  type UploadPartCommandOutput,
} from "@aws-sdk/client-s3";

import type { Readable } from "node:stream";
import { DEFAULT_TUNING } from "../config/types.js";
import { backoff } from "../util/backoff.js";
import type { ReadSse, WriteSse } from "./encryption.js";
import { type S3Error, cancelledRequest, location, mayRetry, storageError } from "./errors.js";
import type { BodySink } from "../http/http1.js";
import type { GetAnswer, GetInput, LeanRequests, PutAnswer, SinkFor } from "./lean-requests.js";
import { type S3RequestEnded, publishS3Request, s3RequestObserved } from "./events.js";
import { rateWindowMs, tooSlow } from "../http/pace.js";

/** A part of a multipart upload as CompleteMultipartUpload takes it (the engine collects them). */
export type { CompletedPart } from "@aws-sdk/client-s3";

export type { BodySink, GetAnswer, GetInput, SinkFor };

/** Receives one line per S3 request when debug logging is on: no credentials, no bodies. */

/** Everything of a command's input but what the store fills in. */
type Rest<T> = Omit<T, "Bucket" | "Key">;

export interface SendOptions {
  signal?: AbortSignal | undefined;
  /** One attempt only: the caller decides about repeating (OpenStream must not retry). */
  single?: boolean;
}

export interface StoreOptions {
  bucket: string;
  /** The endpoint as people read it, for messages and log lines. */
  endpoint: string;
  retrying: S3Client;
  singleAttempt: S3Client;
  /** GetObject's (and small PutObject's) lean data path, where the configuration allows it (see client.ts). */
  lean?: LeanRequests | undefined;
  /** Attempts of a lean PutObject (the SDK's own setting for its client). */
  maxAttempts?: number;
  /** The answer head's deadline and the window a body's rate is judged over (pace.ts). */
  requestTimeoutMs?: number;
  /** Slowest answer body accepted, bytes/s (pace.ts; default MIN_BODY_RATE). */
  minBodyRate?: number | undefined;
}

export class ObjectStore {
  readonly bucket: string;
  readonly endpoint: string;
  private readonly retrying: S3Client;
  private readonly singleAttempt: S3Client;
  private readonly lean: LeanRequests | undefined;
  private readonly maxAttempts: number;
  private readonly requestTimeoutMs: number;
  private readonly minBodyRate: number | undefined;

  constructor(o: StoreOptions) {
    this.bucket = o.bucket;
    this.endpoint = o.endpoint;
    this.retrying = o.retrying;
    this.singleAttempt = o.singleAttempt;
    this.lean = o.lean;
    this.maxAttempts = o.maxAttempts ?? 3;
    this.requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_TUNING.requestTimeoutMs;
    this.minBodyRate = o.minBodyRate;
  }

  /** "s3://bucket/key (endpoint …)", as messages name an object (or the bucket, without a key). */
  location(key?: string): string {
    return location({ bucket: this.bucket, key, endpointLabel: this.endpoint });
  }

  /** `op` on `key` ended by the caller's cancellation (whatever the request itself answered). */
  cancelled(op: string, key: string, signal: AbortSignal): S3Error {
    return cancelledRequest(op, { bucket: this.bucket, key, endpointLabel: this.endpoint }, signal.reason);
  }

  /** `request`'s failure as an S3Error naming `op` and `key`. */
  private async named<T>(op: string, key: string | undefined, o: SendOptions, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (e) {
      throw storageError(op, { bucket: this.bucket, key, endpointLabel: this.endpoint }, e, o.signal);
    }
  }

  /**
   * GetObject with its body poured into the buffers `sinkFor` hands out (one
   * attempt: the engine retries ranges itself). The lean path when there is
   * one; else the SDK's answer, copied from its stream into the same buffers.
   */
  getInto(key: string, input: GetInput, sse: ReadSse, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer> {
    const op = input.Range ? `GetObject ${input.Range}` : "GetObject";
    return this.named(op, key, o, () =>
      this.lean
        ? this.leanGet(this.lean, key, input, sse, o, sinkFor)
        : this.getIntoViaSdk(key, input, sse, o, sinkFor),
    );
  }

  private leanGet(
    lean: LeanRequests,
    key: string,
    input: GetInput,
    sse: ReadSse,
    o: SendOptions,
    sinkFor: SinkFor,
  ): Promise<GetAnswer> {
    return this.leanLogged({ s3: "GetObject", key, range: input.Range, attempts: 1 }, input.Range ? 206 : 200, () =>
      lean.get(key, input, sse, o.signal, sinkFor),
    );
  }

  /** One S3RequestEnded per lean request, as client.ts's middleware publishes for the SDK's. */
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

  /**
   * The SDK's way: the same rules as the lean client's (pace.ts): its head
   * within the request timeout (the handler's requestTimeout, which ends when
   * the head arrives), its body at least MIN_BODY_RATE over each window, and
   * never a byte past the sink or past the length it announced.
   */
  private async getIntoViaSdk(
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
   * same time by the response cap (client.ts). Uploads (PutObject, UploadPart)
   * send their body before the head can come and are paced by the socket.
   */
  private opts(o: SendOptions, upload = false): { abortSignal?: AbortSignal; requestTimeout?: number } {
    return {
      ...(o.signal ? { abortSignal: o.signal } : {}),
      ...(upload ? {} : { requestTimeout: this.requestTimeoutMs }),
    };
  }

  head(key: string, input: Rest<HeadObjectCommandInput>, o: SendOptions): Promise<HeadObjectCommandOutput> {
    return this.named("HeadObject", key, o, () =>
      this.client(o).send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o)),
    );
  }

  /**
   * PutObject of a body in memory. With its CRC32 it goes the lean way,
   * retried here as the SDK would (5xx, throttling, no answer); without,
   * through the SDK.
   */
  put(key: string, body: Buffer, crc32Base64: string | undefined, sse: WriteSse, o: SendOptions): Promise<PutAnswer> {
    return this.named("PutObject", key, o, () => this.putOnce(key, body, crc32Base64, sse, o));
  }

  private async putOnce(
    key: string,
    body: Buffer,
    crc32Base64: string | undefined,
    sse: WriteSse,
    o: SendOptions,
  ): Promise<PutAnswer> {
    if (!this.lean || !crc32Base64) {
      const input = {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ...(crc32Base64 ? { ChecksumCRC32: crc32Base64 } : {}),
        ...sse,
      };
      return this.client(o).send(new PutObjectCommand(input), this.opts(o, true));
    }
    const lean = this.lean;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.leanLogged({ s3: "PutObject", key, attempts: attempt }, 200, () =>
          lean.put(key, body, crc32Base64, sse, o.signal),
        );
      } catch (e) {
        if (!mayRetry(e, o.signal) || o.single || attempt >= this.maxAttempts) throw e;
        await backoff(attempt);
      }
    }
  }

  async deleteObject(key: string, o: SendOptions): Promise<void> {
    await this.named("DeleteObject", key, o, () =>
      this.client(o).send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), this.opts(o)),
    );
  }

  /** `prefix`: what the keys are under, for messages. */
  deleteObjects(keys: readonly string[], prefix: string, o: SendOptions): Promise<DeleteObjectsCommandOutput> {
    const Objects = keys.map((Key) => ({ Key }));
    return this.named("DeleteObjects", prefix, o, () =>
      this.client(o).send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects, Quiet: true } }),
        this.opts(o),
      ),
    );
  }

  listObjects(
    prefix: string,
    token: string | undefined,
    maxKeys: number | undefined,
    o: SendOptions,
  ): Promise<ListObjectsV2CommandOutput> {
    return this.named("ListObjectsV2", prefix, o, () =>
      this.client(o).send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: maxKeys }),
        this.opts(o),
      ),
    );
  }

  createMultipartUpload(
    key: string,
    input: Rest<CreateMultipartUploadCommandInput>,
    o: SendOptions,
  ): Promise<CreateMultipartUploadCommandOutput> {
    return this.named("CreateMultipartUpload", key, o, () =>
      this.client(o).send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o)),
    );
  }

  uploadPart(key: string, input: Rest<UploadPartCommandInput>, o: SendOptions): Promise<UploadPartCommandOutput> {
    return this.named(`UploadPart ${input.PartNumber}`, key, o, () =>
      this.client(o).send(new UploadPartCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o, true)),
    );
  }

  completeMultipartUpload(
    key: string,
    input: Rest<CompleteMultipartUploadCommandInput>,
    o: SendOptions,
  ): Promise<CompleteMultipartUploadCommandOutput> {
    return this.named("CompleteMultipartUpload", key, o, () =>
      this.client(o).send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...input }),
        this.opts(o),
      ),
    );
  }

  abortMultipartUpload(key: string, uploadId: string, o: SendOptions): Promise<AbortMultipartUploadCommandOutput> {
    return this.named("AbortMultipartUpload", key, o, () =>
      this.client(o).send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
        this.opts(o),
      ),
    );
  }

  listMultipartUploads(prefix: string, o: SendOptions): Promise<ListMultipartUploadsCommandOutput> {
    return this.named("ListMultipartUploads", prefix, o, () =>
      this.client(o).send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix }), this.opts(o)),
    );
  }

  listParts(key: string, input: Rest<ListPartsCommandInput>, o: SendOptions): Promise<ListPartsCommandOutput> {
    return this.named("ListParts", key, o, () =>
      this.client(o).send(new ListPartsCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o)),
    );
  }

  async headBucket(o: SendOptions): Promise<void> {
    await this.named("HeadBucket", undefined, o, () =>
      this.client(o).send(new HeadBucketCommand({ Bucket: this.bucket }), this.opts(o)),
    );
  }

  async createBucket(objectLocking: boolean, o: SendOptions): Promise<void> {
    await this.named("CreateBucket", undefined, o, () =>
      this.client(o).send(
        new CreateBucketCommand({ Bucket: this.bucket, ObjectLockEnabledForBucket: objectLocking || undefined }),
        this.opts(o),
      ),
    );
  }

  async putBucketEncryption(
    config: PutBucketEncryptionCommandInput["ServerSideEncryptionConfiguration"],
    o: SendOptions,
  ): Promise<void> {
    await this.named("PutBucketEncryption", undefined, o, () =>
      this.client(o).send(
        new PutBucketEncryptionCommand({ Bucket: this.bucket, ServerSideEncryptionConfiguration: config }),
        this.opts(o),
      ),
    );
  }
}
