// The store port (src/store/port.ts) in this process, for unit tests of the
// transfer engine and for the store contract suite (store-contract.ts holds it
// to the answers SdkStore and LeanStore give against MinIO), with hooks that
// make a request slow or fail the way a real store or connection does (an S3
// error with a status, a body cut short).
import { parseConfig } from "../../src/config/parse.js";
import { cancelledRequest, location, storageError } from "../../src/s3/errors.js";
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
  StoreError,
  StoreTarget,
  UploadStarted,
  Written,
} from "../../src/store/port.js";
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

type Op = "head" | "get" | "put" | "create" | "part" | "complete" | "abort" | "list" | "delete" | "parts";

interface Upload {
  key: string;
  parts: Map<number, Buffer>;
  initiated: Date;
}

/** The operation names the S3 stores give their failures. */
const OPS: Record<Op, string> = {
  head: "HeadObject",
  get: "GetObject",
  put: "PutObject",
  create: "CreateMultipartUpload",
  part: "UploadPart",
  complete: "CompleteMultipartUpload",
  abort: "AbortMultipartUpload",
  list: "ListObjectsV2",
  delete: "DeleteObject",
  parts: "ListParts",
};

const aborted = (signal: AbortSignal | undefined) =>
  Object.assign(new Error("aborted"), { name: "AbortError", cause: signal?.reason });

export class MemoryStore implements Store {
  readonly bucket = "mem";
  readonly endpoint = "memory";
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

  cancelled(op: string, key: string, signal: AbortSignal): StoreError {
    return cancelledRequest(op, { bucket: "mem", key, endpointLabel: "memory" }, signal.reason);
  }

  /** Run one request as the S3 stores do: every failure leaves as an S3Error naming it. */
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

  head(key: string, checksums: boolean, o: SendOptions): Promise<ObjectHead> {
    return this.named("head", key, o, undefined, async () => {
      await this.enter("head", key, o);
      const data = this.object(key);
      return {
        size: data.length,
        etag: etagOf(data),
        ...(checksums ? { crc32: crc32ToBase64(crc32(data)), checksumType: "FULL_OBJECT" } : {}),
      };
    });
  }

  getInto(key: string, input: GetInput, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer> {
    return this.named("get", key, o, input.Range, () => this.rawGet(key, input, o, sinkFor));
  }

  private async rawGet(key: string, input: GetInput, o: SendOptions, sinkFor: SinkFor): Promise<GetAnswer> {
    const fault = await this.enter("get", key, o, input.Range);
    const data = this.object(key);
    if (input.IfMatch !== undefined && input.IfMatch !== etagOf(data)) throw s3Failure(412, "PreconditionFailed");
    const m = input.Range ? /^bytes=(\d+)-(\d+)$/.exec(input.Range) : null;
    if (m && Number(m[1]) >= data.length) throw s3Failure(416, "InvalidRange");
    const last = m ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    const body = m ? data.subarray(Number(m[1]), last + 1) : data;
    const answer: GetAnswer = {
      ContentLength: body.length,
      ETag: etagOf(data),
      ...(m
        ? { ContentRange: `bytes ${m[1]}-${last}/${data.length}` }
        : input.ChecksumMode === "ENABLED"
          ? { ChecksumCRC32: crc32ToBase64(crc32(data)), ChecksumType: "FULL_OBJECT" }
          : {}),
    };
    const sink = sinkFor(answer);
    const end = fault ? Math.min(fault.cut, body.length) : body.length;
    // Odd-sized pieces, as sockets deliver them.
    for (let off = 0; off < end;) {
      if (o.signal?.aborted) throw aborted(o.signal);
      const dest = sink.space();
      const n = Math.min(dest.length, end - off, 100_003);
      if (n === 0)
        throw Object.assign(new Error("the answer's body is longer than what was asked for"), { code: "EPROTO" });
      body.copy(dest, 0, off, off + n);
      off += n;
      const pending = sink.took(n);
      if (pending) await pending;
    }
    if (end < body.length) throw connectionReset();
    return answer;
  }

  put(key: string, body: Buffer, crc: string | undefined, o: SendOptions): Promise<Written> {
    return this.named("put", key, o, undefined, async () => {
      await this.enter("put", key, o);
      if (crc !== undefined && crc !== crc32ToBase64(crc32(body))) throw s3Failure(400, "BadDigest");
      this.objects.set(key, Buffer.from(body));
      return {};
    });
  }

  createUpload(key: string, _checksums: boolean, o: SendOptions): Promise<UploadStarted> {
    return this.named("create", key, o, undefined, async () => {
      await this.enter("create", key, o);
      const id = `upload-${this.nextId++}`;
      this.uploads.set(id, { key, parts: new Map(), initiated: new Date() });
      return { uploadId: id };
    });
  }

  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Buffer,
    crc: string | undefined,
    o: SendOptions,
  ): Promise<PartStored> {
    return this.named("part", key, o, String(partNumber), async () => {
      await this.enter("part", key, o, String(partNumber));
      const up = this.uploads.get(uploadId);
      if (!up || up.key !== key) throw s3Failure(404, "NoSuchUpload");
      if (crc !== undefined && crc !== crc32ToBase64(crc32(body))) throw s3Failure(400, "BadDigest");
      up.parts.set(partNumber, Buffer.from(body));
      return { etag: etagOf(body) };
    });
  }

  completeUpload(
    key: string,
    uploadId: string,
    parts: readonly CompletedPart[],
    crc: string | undefined,
    o: SendOptions,
  ): Promise<Written> {
    return this.named("complete", key, o, undefined, async () => {
      await this.enter("complete", key, o);
      const up = this.uploads.get(uploadId);
      if (!up || up.key !== key) throw s3Failure(404, "NoSuchUpload");
      const bodies = parts.map((p) => {
        const body = up.parts.get(p.partNumber);
        if (!body || etagOf(body) !== p.etag) throw s3Failure(400, "InvalidPart");
        return body;
      });
      const data = Buffer.concat(bodies);
      if (crc !== undefined && crc !== crc32ToBase64(crc32(data))) throw s3Failure(400, "BadDigest");
      this.uploads.delete(uploadId);
      this.objects.set(key, data);
      return {};
    });
  }

  abortUpload(key: string, uploadId: string, o: SendOptions): Promise<void> {
    return this.named("abort", key, o, undefined, async () => {
      await this.enter("abort", key, o);
      if (!this.uploads.has(uploadId)) throw s3Failure(404, "NoSuchUpload");
      this.uploads.delete(uploadId);
    });
  }

  async pendingUploads(prefix: string): Promise<PendingUpload[]> {
    return [...this.uploads]
      .filter(([, u]) => u.key.startsWith(prefix))
      .map(([uploadId, u]) => ({ uploadId, key: u.key, initiated: u.initiated }));
  }

  async hasParts(key: string, uploadId: string, o: SendOptions): Promise<boolean> {
    return this.named("parts", key, o, undefined, async () => {
      const up = this.uploads.get(uploadId);
      if (!up) throw s3Failure(404, "NoSuchUpload");
      return up.parts.size > 0;
    });
  }

  /** Keys in S3's order (UTF-8 bytes), a page of at most maxKeys; the token is the last key given. */
  listPage(prefix: string, token: string | undefined, maxKeys: number, o: SendOptions): Promise<ListPage> {
    return this.named("list", prefix, o, undefined, async () => {
      await this.enter("list", prefix, o);
      const keys = [...this.objects.keys()]
        .filter(
          (k) =>
            k.startsWith(prefix) && (token === undefined || Buffer.compare(Buffer.from(k), Buffer.from(token)) > 0),
        )
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const page = keys.slice(0, Math.min(maxKeys, 1000));
      return {
        objects: page.map((key) => ({
          key,
          size: this.objects.get(key)!.length,
          etag: etagOf(this.objects.get(key)!),
        })),
        next: keys.length > page.length ? page.at(-1) : undefined,
      };
    });
  }

  deleteObject(key: string, o: SendOptions): Promise<void> {
    return this.named("delete", key, o, undefined, async () => {
      await this.enter("delete", key, o);
      this.objects.delete(key);
    });
  }

  deleteObjects(keys: readonly string[], prefix: string, o: SendOptions): Promise<NotDeleted[]> {
    return this.named("delete", prefix, o, undefined, async () => {
      await this.enter("delete", prefix, o);
      for (const k of keys) this.objects.delete(k);
      return [];
    });
  }

  /** The memory store's one bucket always exists. */
  async ensureBucket(): Promise<void> {}
}

function etagOf(data: Buffer): string {
  return `"${crc32(data).toString(16)}-${data.length}"`;
}

/** A target over `store` with the tuning given in YAML (e.g. "{partSizeMiB: 5, partConcurrency: 2}"). */
export function memoryTarget(store: MemoryStore, tuning = "{}"): StoreTarget {
  const cfg = parseConfig(`endpoint: memory.invalid\nbucket: mem\ninsecure: true\ntuning: ${tuning}\n`);
  return { cfg, bucket: "mem", endpointLabel: "memory", store };
}
