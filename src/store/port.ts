// The store port: what the transfer engine asks of one bucket, in the plugin's
// own types. src/s3/ implements it over the AWS SDK (SdkStore) and the lean data
// path (LeanStore); test/support/memory-store.ts implements it in memory. One
// contract suite (test/support/store-contract.ts) holds all three to the same
// answers. Server-side encryption is the store's business: reads and writes
// carry what the configuration asks for, and every write answer says whether
// the store confirmed it.
import type { PluginConfig } from "../config/types.js";
import { PluginError, type ErrorKind } from "../errors.js";
import type { BodySink } from "../http/http1.js";

/** Where a body goes: buffers handed out in order (src/http/http1.ts). */
export type { BodySink };

export interface SendOptions {
  signal?: AbortSignal | undefined;
  /** One attempt only: the caller decides about repeating (OpenStream, CreateMultipartUpload). */
  single?: boolean;
}

/** What HEAD says of an object. */
export interface ObjectHead {
  size: number;
  etag: string | undefined;
  /** The object's CRC32 as the store reports it (base64), when checksums were asked for. */
  crc32?: string | undefined;
  /** "FULL_OBJECT" or "COMPOSITE" when the store says which the CRC32 is. */
  checksumType?: string | undefined;
}

export interface GetInput {
  /** "bytes=a-b", or undefined for the whole object. */
  Range?: string | undefined;
  IfMatch?: string | undefined;
  ChecksumMode?: "ENABLED" | undefined;
}

/** The parts of a GetObject answer the engine reads. */
export interface GetAnswer {
  /** The body's announced length; undefined for a chunked body (its receiver bounds it). */
  ContentLength: number | undefined;
  /** A 206's "bytes a-b/size" (checked against the range asked for by the engine). */
  ContentRange?: string | undefined;
  ETag?: string | undefined;
  ChecksumCRC32?: string | undefined;
  ChecksumType?: string | undefined;
}

/** Chooses the body's destination once the answer's length is known (throw to refuse it). */
export type SinkFor = (answer: GetAnswer) => BodySink;

/** Every write's answer: undefined `unencrypted` when the encryption asked for is confirmed (or none was asked). */
export interface Written {
  /** Why the store's answer does not confirm the encryption asked for. */
  unencrypted?: string | undefined;
}

export interface UploadStarted extends Written {
  uploadId: string | undefined;
}

export interface PartStored extends Written {
  etag: string | undefined;
}

export interface CompletedPart {
  partNumber: number;
  etag: string | undefined;
  /** The part's CRC32 (base64), when it was sent with one. */
  crc32?: string | undefined;
}

/** An object of a listing. */
export interface ListedObject {
  key: string;
  size: number;
  etag: string | undefined;
}

export interface ListPage {
  objects: ListedObject[];
  /** The token for the next page; undefined on the last. */
  next: string | undefined;
}

/** A multipart upload in progress, as ListMultipartUploads shows it. */
export interface PendingUpload {
  key: string;
  uploadId: string;
  initiated: Date;
}

/** A key a DeleteObjects did not delete, and why. */
export interface NotDeleted {
  key: string;
  code: string | undefined;
  message: string | undefined;
}

/** One bucket of one store. Every failure is a StoreError naming the operation, bucket, key and endpoint. */
export interface Store {
  readonly bucket: string;
  /** The endpoint as people read it, for messages. */
  readonly endpoint: string;
  /** "s3://bucket/key (endpoint …)", as messages name an object (or the bucket, without a key). */
  location(key?: string): string;
  /** `op` on `key` ended by the caller's cancellation. */
  cancelled(op: string, key: string, signal: AbortSignal): StoreError;

  /** A missing key is a StoreError of kind "not-found". `checksums`: ask for the object's CRC32. */
  head(key: string, checksums: boolean, o: SendOptions): Promise<ObjectHead>;
  /** GetObject with its body poured into the buffers `sinkFor` hands out; one attempt. */
  getInto(key: string, input: GetInput, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer>;
  /** PutObject of a body in memory, with its CRC32 (base64) when given. */
  put(key: string, body: Buffer, crc32: string | undefined, o: SendOptions): Promise<Written>;

  /** `checksums`: the upload's parts carry CRC32s and Complete the full object's. */
  createUpload(key: string, checksums: boolean, o: SendOptions): Promise<UploadStarted>;
  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Buffer,
    crc32: string | undefined,
    o: SendOptions,
  ): Promise<PartStored>;
  /** `parts` in part-number order; `crc32`: the full object's CRC32 (base64), when checksummed. */
  completeUpload(
    key: string,
    uploadId: string,
    parts: readonly CompletedPart[],
    crc32: string | undefined,
    o: SendOptions,
  ): Promise<Written>;
  abortUpload(key: string, uploadId: string, o: SendOptions): Promise<void>;
  /** Uploads in progress under `prefix` (the late-upload watch's query). */
  pendingUploads(prefix: string, o: SendOptions): Promise<PendingUpload[]>;
  /** Whether the upload has stored any part yet. */
  hasParts(key: string, uploadId: string, o: SendOptions): Promise<boolean>;

  /** One page of the objects under `prefix`, at most `maxKeys` (a store that sends more is refused). */
  listPage(prefix: string, token: string | undefined, maxKeys: number, o: SendOptions): Promise<ListPage>;
  deleteObject(key: string, o: SendOptions): Promise<void>;
  /** Up to 1,000 keys; `prefix` names them in messages. Returns the keys not deleted. */
  deleteObjects(keys: readonly string[], prefix: string, o: SendOptions): Promise<NotDeleted[]>;

  /** createBucketIfNotPresent with its settings, once per store; nothing when the configuration does not ask. */
  ensureBucket(signal: AbortSignal): Promise<void>;
}

/** A call's target as the layers above the store see it: its configuration (tuning, tenant) and its bucket's store. */
export interface StoreTarget {
  readonly cfg: PluginConfig;
  readonly bucket: string;
  /** The endpoint as people read it, e.g. "http://127.0.0.1:9000". */
  readonly endpointLabel: string;
  readonly store: Store;
}

/** A failed request to a store, described: the fields for code, one sentence for people. */
export class StoreError extends PluginError {
  /** e.g. "GetObject bytes=0-99", "UploadPart 3". */
  readonly operation: string;
  readonly bucket: string;
  readonly key: string | undefined;
  readonly endpoint: string;
  /** The store's error code ("NoSuchKey", "SlowDown"), or a connection error's ("ECONNREFUSED"). */
  readonly code: string | undefined;
  /** The HTTP status; undefined when no answer came (refused, reset, timed out, cancelled). */
  readonly status: number | undefined;

  constructor(
    kind: ErrorKind,
    message: string,
    f: {
      operation: string;
      bucket: string;
      key: string | undefined;
      endpoint: string;
      code: string | undefined;
      status: number | undefined;
      retryable: boolean;
      cause?: unknown;
    },
  ) {
    super(kind, message, { cause: f.cause, retryable: f.retryable });
    this.name = "StoreError";
    this.operation = f.operation;
    this.bucket = f.bucket;
    this.key = f.key;
    this.endpoint = f.endpoint;
    this.code = f.code;
    this.status = f.status;
  }
}
