// The data path's requests without the SDK's per-request middleware: GetObject
// (the body goes straight into the caller's buffers, http1.ts) and PutObject
// of a body already in memory (every small file of a directory Save). Signed with
// the SDK's own SigV4 signer and the target's credentials; the answer's
// errors are given the SDK's error shape, so storageError (errors.ts) words
// them as it words every other S3 failure. Used where it is exactly
// equivalent to the SDK's request (see `leanGetRoute` in targets.ts); everything
// else, and every other command, goes through the SDK.
import { createHash, createHmac } from "node:crypto";
import type { LookupFunction } from "node:net";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@aws-sdk/types";
import { SignatureV4 } from "@smithy/signature-v4";
import type { GetAnswer, GetInput, SinkFor } from "../store/port.js";
import type { ReadSse, WriteSse } from "./encryption.js";
import type { Framing } from "../http/http1-framing.js";
import { Http1Pool, type ResponseHead } from "../http/http1.js";

export type { GetAnswer, GetInput, SinkFor };

export interface LeanOptions {
  protocol: "http:" | "https:";
  /** Host (and port) requests go to; for virtual-hosted style, the bucket's own host. */
  host: string;
  port: number;
  pathStyle: boolean;
  bucket: string;
  region: string;
  credentials: AwsCredentialIdentityProvider;
  ca: string[] | undefined;
  lookup: LookupFunction;
  checkPeer?: ((address: string | undefined) => string | undefined) | undefined;
  maxSockets: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Slowest answer body accepted, bytes/s (pace.ts). */
  minBodyRate?: number | undefined;
}

/** SHA-256 / HMAC-SHA-256 in the shape the signer asks for. */
type Source = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: Source): string | Uint8Array =>
  typeof d === "string"
    ? d
    : d instanceof ArrayBuffer
      ? new Uint8Array(d)
      : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

class Sha256 {
  private readonly h;
  constructor(secret?: Source) {
    this.h = secret === undefined ? createHash("sha256") : createHmac("sha256", bytes(secret));
  }
  update(data: Source): void {
    this.h.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.h.digest());
  }
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** S3's URI encoding of a key: every byte but unreserved characters and '/'. */
export function encodeKey(key: string): string {
  return key
    .split("/")
    .map((seg) => encodeURIComponent(seg).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join("/");
}

/** Credentials kept until shortly before they expire; concurrent callers share one fetch. */
function memoized(provider: AwsCredentialIdentityProvider): () => Promise<AwsCredentialIdentity> {
  let current: Promise<AwsCredentialIdentity> | undefined;
  const fresh = (c: AwsCredentialIdentity) => !c.expiration || c.expiration.getTime() - Date.now() > 10_000;
  let last: AwsCredentialIdentity | undefined;
  return async () => {
    if (last && fresh(last)) return last;
    current ??= Promise.resolve(provider()).finally(() => (current = undefined));
    last = await current;
    return last;
  };
}

/** The parts of a PutObject answer the engine reads (the encryption check among them). */
export interface PutAnswer {
  ETag?: string | undefined;
  ServerSideEncryption?: string | undefined;
  SSECustomerAlgorithm?: string | undefined;
  SSEKMSKeyId?: string | undefined;
}

export class LeanRequests {
  private readonly pool: Http1Pool;
  private readonly signer: SignatureV4;
  private readonly hostHeader: string;

  constructor(private readonly o: LeanOptions) {
    const tls = o.protocol === "https:";
    this.pool = new Http1Pool({
      host: o.host,
      port: o.port,
      tls: tls ? { ca: o.ca } : undefined,
      lookup: o.lookup,
      checkPeer: o.checkPeer,
      maxSockets: o.maxSockets,
      connectTimeoutMs: o.connectTimeoutMs,
      idleTimeoutMs: 30_000,
      minBodyRate: o.minBodyRate,
    });
    this.signer = new SignatureV4({
      service: "s3",
      region: o.region,
      credentials: memoized(o.credentials),
      sha256: Sha256,
      uriEscapePath: false,
      applyChecksum: false,
    });
    const defaultPort = tls ? 443 : 80;
    const hostText = o.host.includes(":") ? `[${o.host}]` : o.host;
    this.hostHeader = o.port === defaultPort ? hostText : `${hostText}:${o.port}`;
  }

  /**
   * GET `key` (or a range of it) into the sinks `sinkFor` hands out. Resolves
   * with the answer once every body byte is in place; an S3 error answer is
   * thrown in the SDK's error shape (name = S3 code, $metadata.httpStatusCode).
   */
  async get(
    key: string,
    input: GetInput,
    sse: ReadSse,
    signal: AbortSignal | undefined,
    sinkFor: SinkFor,
  ): Promise<GetAnswer> {
    const headers: Record<string, string> = { "x-amz-content-sha256": EMPTY_SHA256 };
    if (input.Range) headers["range"] = input.Range;
    if (input.IfMatch) headers["if-match"] = input.IfMatch;
    if (input.ChecksumMode) headers["x-amz-checksum-mode"] = input.ChecksumMode;
    sseHeaders(headers, sse);
    let answer: GetAnswer | undefined;
    const r = await this.pool.request(
      await this.head("GET", key, headers),
      (h, framing) => {
        if (h.status !== 200 && h.status !== 206) return "collect";
        answer = answerOf(h, framing);
        return sinkFor(answer);
      },
      signal,
      this.o.requestTimeoutMs,
    );
    if (answer) return answer;
    throw s3Error(r.head, r.body);
  }

  /**
   * PUT `body` at `key` in one request, its CRC32 in a signed header (the
   * payload itself unsigned, as the SDK path does: S3 verifies the CRC32).
   * One attempt; an S3 error answer is thrown in the SDK's error shape.
   */
  async put(
    key: string,
    body: Buffer,
    crc32Base64: string,
    sse: WriteSse,
    signal: AbortSignal | undefined,
  ): Promise<PutAnswer> {
    const headers: Record<string, string> = {
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      "content-length": String(body.length),
      // What the SDK sends for a body without a type, so both paths store the same.
      "content-type": "application/octet-stream",
      "x-amz-checksum-crc32": crc32Base64,
    };
    if (sse.ServerSideEncryption) headers["x-amz-server-side-encryption"] = sse.ServerSideEncryption;
    if (sse.SSEKMSKeyId) headers["x-amz-server-side-encryption-aws-kms-key-id"] = sse.SSEKMSKeyId;
    if (sse.SSEKMSEncryptionContext) headers["x-amz-server-side-encryption-context"] = sse.SSEKMSEncryptionContext;
    sseHeaders(headers, sse);
    const r = await this.pool.request(
      await this.head("PUT", key, headers),
      () => "collect",
      signal,
      this.o.requestTimeoutMs,
      body,
    );
    if (r.head.status !== 200) throw s3Error(r.head, r.body);
    const h = r.head.headers;
    return {
      ETag: h["etag"],
      ServerSideEncryption: h["x-amz-server-side-encryption"],
      SSECustomerAlgorithm: h["x-amz-server-side-encryption-customer-algorithm"],
      SSEKMSKeyId: h["x-amz-server-side-encryption-aws-kms-key-id"],
    };
  }

  /** The signed request head for `method` on `key`. */
  private async head(method: "GET" | "PUT", key: string, headers: Record<string, string>): Promise<string> {
    const path = this.o.pathStyle ? `/${encodeKey(this.o.bucket)}/${encodeKey(key)}` : `/${encodeKey(key)}`;
    headers["host"] = this.hostHeader;
    const signed = await this.signer.sign({
      method,
      protocol: this.o.protocol,
      hostname: this.o.host,
      port: this.o.port,
      path,
      query: {},
      headers,
    });
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(signed.headers)) {
      if (/[\r\n]/.test(value)) throw new Error(`header ${name} of the request contains a line break`);
      head += `${name}: ${value}\r\n`;
    }
    return `${head}user-agent: argo-s3-artifact-plugin\r\n\r\n`;
  }

  close(): void {
    this.pool.close();
  }
}

/** SSE-C: the key and its MD5 go with every read and write of the object. */
function sseHeaders(headers: Record<string, string>, sse: ReadSse): void {
  if (!sse.SSECustomerKey) return;
  headers["x-amz-server-side-encryption-customer-algorithm"] = sse.SSECustomerAlgorithm ?? "AES256";
  headers["x-amz-server-side-encryption-customer-key"] = sse.SSECustomerKey;
  headers["x-amz-server-side-encryption-customer-key-md5"] = createHash("md5")
    .update(Buffer.from(sse.SSECustomerKey, "base64"))
    .digest("base64");
}

function answerOf(h: ResponseHead, framing: Framing): GetAnswer {
  return {
    ContentLength: framing.kind === "length" ? framing.length : undefined,
    ContentRange: h.headers["content-range"],
    ETag: h.headers["etag"],
    ChecksumCRC32: h.headers["x-amz-checksum-crc32"],
    ChecksumType: h.headers["x-amz-checksum-type"],
  };
}

/** An S3 error answer in the SDK's error shape. */
export function s3Error(h: ResponseHead, body: Buffer | undefined): Error {
  const xml = body?.toString("utf8") ?? "";
  const tag = (name: string) => new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml)?.[1]?.trim();
  const code = tag("Code");
  const message = tag("Message");
  const e = new Error(message ?? (code ? code : `HTTP ${h.status}`)) as Error & {
    $metadata: { httpStatusCode: number; attempts: number };
    $fault: string;
    Code?: string;
    Region?: string;
  };
  e.name = code ?? "Unknown";
  if (code) e.Code = code;
  // The region the store expects, when it says (a request signed for another one), as the SDK keeps it.
  const region = tag("Region");
  if (region) e.Region = region;
  e.$metadata = { httpStatusCode: h.status, attempts: 1 };
  e.$fault = h.status >= 500 ? "server" : "client";
  return e;
}
