// An S3 store in this process, for unit tests of the transfer engine through
// the store interface it uses (ObjectStore's methods, same inputs and
// answers), with hooks that make a request slow or fail the way a real store
// or connection does (an S3 error with a status, a body cut short).
import { parseConfig } from "../../src/config/parse.js";
import type { PluginError } from "../../src/errors.js";
import type { S3Target } from "../../src/s3/client.js";
import { Encryption } from "../../src/s3/encryption.js";
import { cancelledRequest, location, storageError } from "../../src/s3/errors.js";
import type { GetAnswer, GetInput, ObjectStore, SendOptions, SinkFor } from "../../src/s3/store.js";
import { crc32, crc32ToBase64 } from "../../src/transfer/crc32.js";

/** An error shaped like the SDK's for an S3 answer with `status`. */
export function s3Failure(status: number, code: string): Error {
  return Object.assign(new Error(`${code} (test store)`), {
    name: code,
    Code: code,
    $metadata: { httpStatusCode: status },
  });
}

/** A connection that broke: no status, worth another attempt. */
export function connectionReset(): Error {
  return Object.assign(new Error("socket hang up (test store)"), { code: "ECONNRESET" });
}

type Op = "head" | "get" | "put" | "create" | "part" | "complete" | "abort";

type PartInput = {
  UploadId?: string | undefined;
  PartNumber?: number | undefined;
  Body?: unknown;
  ChecksumCRC32?: string | undefined;
};
type CompleteInput = {
  UploadId?: string | undefined;
  MultipartUpload?: { Parts?: { PartNumber?: number | undefined }[] | undefined } | undefined;
  ChecksumCRC32?: string | undefined;
};

interface Upload {
  key: string;
  parts: Map<number, Buffer>;
  initiated: Date;
}

/** The operation names ObjectStore gives its failures. */
const OPS: Record<Op, string> = {
  head: "HeadObject",
  get: "GetObject",
  put: "PutObject",
  create: "CreateMultipartUpload",
  part: "UploadPart",
  complete: "CompleteMultipartUpload",
  abort: "AbortMultipartUpload",
};

const aborted = (signal: AbortSignal | undefined) =>
  Object.assign(new Error("aborted"), { name: "AbortError", cause: signal?.reason });

export class MemoryStore {
  readonly objects = new Map<string, Buffer>();
  readonly uploads = new Map<string, Upload>();
  readonly calls: { op: Op; key: string; detail?: string }[] = [];
  /**
   * Runs before each request: throw to fail it, return a promise to delay it
   * (it should honour the signal). `cut` (GET only): the body breaks after that many bytes.
   */
  before: (
    op: Op,
    key: string,
    detail: string | undefined,
    signal: AbortSignal | undefined,
  ) => void | Promise<void> | { cut: number } = () => undefined;
  private nextId = 1;

  location(key?: string): string {
    return location({ bucket: "mem", key, endpointLabel: "memory" });
  }

  cancelled(op: string, key: string, signal: AbortSignal): PluginError {
    return cancelledRequest(op, { bucket: "mem", key, endpointLabel: "memory" }, signal.reason);
  }

  /** Run one request as ObjectStore does: every failure leaves as an S3Error naming it. */
  private async named<T>(
    op: Op,
    key: string,
    o: SendOptions,
    detail: string | undefined,
    request: () => Promise<T>,
  ): Promise<T> {
    try {
      return await request();
    } catch (e) {
      const name = detail === undefined ? OPS[op] : `${OPS[op]} ${detail}`;
      throw storageError(name, { bucket: "mem", key, endpointLabel: "memory" }, e, o.signal);
    }
  }

  count(op: Op): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  private async enter(op: Op, key: string, o: SendOptions, detail?: string): Promise<{ cut: number } | undefined> {
    this.calls.push({ op, key, ...(detail === undefined ? {} : { detail }) });
    if (o.signal?.aborted) throw aborted(o.signal);
    const r = await this.before(op, key, detail, o.signal);
    if (o.signal?.aborted) throw aborted(o.signal);
    return r && typeof r === "object" && "cut" in r ? r : undefined;
  }

  private object(key: string): Buffer {
    const data = this.objects.get(key);
    if (!data) throw s3Failure(404, "NoSuchKey");
    return data;
  }

  head(key: string, input: unknown, o: SendOptions) {
    return this.named("head", key, o, undefined, () => this.rawHead(key, input, o));
  }

  private async rawHead(key: string, _input: unknown, o: SendOptions) {
    await this.enter("head", key, o);
    const data = this.object(key);
    return {
      ContentLength: data.length,
      ETag: etagOf(data),
      ChecksumCRC32: crc32ToBase64(crc32(data)),
      ChecksumType: "FULL_OBJECT",
      $metadata: {},
    };
  }

  getInto(key: string, input: GetInput, sse: unknown, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer> {
    return this.named("get", key, o, input.Range, () => this.rawGet(key, input, sse, o, sinkFor));
  }

  private async rawGet(
    key: string,
    input: GetInput,
    _sse: unknown,
    o: SendOptions,
    sinkFor: SinkFor,
  ): Promise<GetAnswer> {
    const fault = await this.enter("get", key, o, input.Range);
    const data = this.object(key);
    if (input.IfMatch !== undefined && input.IfMatch !== etagOf(data)) throw s3Failure(412, "PreconditionFailed");
    const m = input.Range ? /^bytes=(\d+)-(\d+)$/.exec(input.Range) : null;
    const body = m ? data.subarray(Number(m[1]), Number(m[2]) + 1) : data;
    const answer: GetAnswer = {
      ContentLength: body.length,
      ETag: etagOf(data),
      ...(m
        ? { ContentRange: `bytes ${m[1]}-${Math.min(Number(m[2]), data.length - 1)}/${data.length}` }
        : { ChecksumCRC32: crc32ToBase64(crc32(data)), ChecksumType: "FULL_OBJECT" }),
    };
    const sink = sinkFor(answer);
    const end = fault ? Math.min(fault.cut, body.length) : body.length;
    // Odd-sized pieces, as sockets deliver them.
    for (let off = 0; off < end;) {
      if (o.signal?.aborted) throw aborted(o.signal);
      const dest = sink.space();
      const n = Math.min(dest.length, end - off, 100_003);
      body.copy(dest, 0, off, off + n);
      off += n;
      const pending = sink.took(n);
      if (pending) await pending;
    }
    if (end < body.length) throw connectionReset();
    return answer;
  }

  put(key: string, body: Buffer, crc: string | undefined, sse: unknown, o: SendOptions) {
    return this.named("put", key, o, undefined, () => this.rawPut(key, body, crc, sse, o));
  }

  private async rawPut(key: string, body: Buffer, crc: string | undefined, _sse: unknown, o: SendOptions) {
    await this.enter("put", key, o);
    if (crc !== undefined && crc !== crc32ToBase64(crc32(body))) throw s3Failure(400, "BadDigest");
    this.objects.set(key, Buffer.from(body));
    return { ETag: etagOf(body) };
  }

  createMultipartUpload(key: string, input: unknown, o: SendOptions) {
    return this.named("create", key, o, undefined, () => this.rawCreate(key, input, o));
  }

  private async rawCreate(key: string, _input: unknown, o: SendOptions) {
    await this.enter("create", key, o);
    const id = `upload-${this.nextId++}`;
    this.uploads.set(id, { key, parts: new Map(), initiated: new Date() });
    return { UploadId: id, $metadata: {} };
  }

  uploadPart(key: string, input: PartInput, o: SendOptions) {
    return this.named("part", key, o, String(input.PartNumber), () => this.rawPart(key, input, o));
  }

  private async rawPart(key: string, input: PartInput, o: SendOptions) {
    await this.enter("part", key, o, String(input.PartNumber));
    const up = this.uploads.get(input.UploadId ?? "");
    if (!up) throw s3Failure(404, "NoSuchUpload");
    const body = Buffer.from(input.Body as Buffer);
    if (input.ChecksumCRC32 !== undefined && input.ChecksumCRC32 !== crc32ToBase64(crc32(body)))
      throw s3Failure(400, "BadDigest");
    up.parts.set(input.PartNumber ?? 0, body);
    return { ETag: etagOf(body), $metadata: {} };
  }

  completeMultipartUpload(key: string, input: CompleteInput, o: SendOptions) {
    return this.named("complete", key, o, undefined, () => this.rawComplete(key, input, o));
  }

  private async rawComplete(key: string, input: CompleteInput, o: SendOptions) {
    await this.enter("complete", key, o);
    const up = this.uploads.get(input.UploadId ?? "");
    if (!up) throw s3Failure(404, "NoSuchUpload");
    const data = Buffer.concat(
      (input.MultipartUpload?.Parts ?? []).map((p) => up.parts.get(p.PartNumber ?? 0) ?? Buffer.alloc(0)),
    );
    if (input.ChecksumCRC32 !== undefined && input.ChecksumCRC32 !== crc32ToBase64(crc32(data)))
      throw s3Failure(400, "BadDigest");
    this.uploads.delete(input.UploadId ?? "");
    this.objects.set(key, data);
    return { $metadata: {} };
  }

  abortMultipartUpload(key: string, uploadId: string, o: SendOptions) {
    return this.named("abort", key, o, undefined, () => this.rawAbort(key, uploadId, o));
  }

  private async rawAbort(key: string, uploadId: string, o: SendOptions) {
    await this.enter("abort", key, o);
    this.uploads.delete(uploadId);
    return { $metadata: {} };
  }

  async listMultipartUploads(prefix: string) {
    const Uploads = [...this.uploads]
      .filter(([, u]) => u.key.startsWith(prefix))
      .map(([UploadId, u]) => ({ UploadId, Key: u.key, Initiated: u.initiated }));
    return { Uploads, $metadata: {} };
  }

  async listParts(_key: string, input: { UploadId?: string | undefined }) {
    const up = this.uploads.get(input.UploadId ?? "");
    if (!up) throw s3Failure(404, "NoSuchUpload");
    return { Parts: [...up.parts.keys()].map((PartNumber) => ({ PartNumber })), $metadata: {} };
  }

  async deleteObject(key: string): Promise<void> {
    this.objects.delete(key);
  }
}

function etagOf(data: Buffer): string {
  return `"${crc32(data).toString(16)}-${data.length}"`;
}

/** A target over `store` with the tuning given in YAML (e.g. "{partSizeMiB: 5, partConcurrency: 2}"). */
export function memoryTarget(store: MemoryStore, tuning = "{}"): S3Target {
  const text = `endpoint: memory.invalid\nbucket: mem\ninsecure: true\ntuning: ${tuning}\n`;
  const cfg = parseConfig(text);
  return {
    cfg,
    bucket: "mem",
    store: store as unknown as ObjectStore,
    clients: [],
    encryption: new Encryption(cfg, { get: () => Promise.resolve(undefined) }),
    endpointLabel: "memory",
    credentialSource: "static",
    agents: [],
    lean: undefined,
  } as unknown as S3Target;
}
