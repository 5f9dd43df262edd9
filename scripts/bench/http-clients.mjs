// @ts-check
// `npm run bench:http`: why the data path has its own HTTP/1.1 client. One
// process reads the same 1 GiB object from MinIO on loopback in 8 MiB ranges,
// 4 at a time, into the same four warmed 8 MiB buffers, with the same SDK
// SigV4 signer, through three clients in turn (rounds interleaved, order
// rotated, median reported): the plugin's (dist/s3/lean-requests.js),
// undici's dispatch API, and node:http (what the AWS SDK sends with). The
// bytes of every range are checked in an unmeasured first round.
// Results: bench/results/http-clients.json.
//
//   npm run bench:http                     # 1 GiB, 3 rounds
//   npm run bench:http -- --gib 0.25 --rounds 1
import { createHash, createHmac } from "node:crypto";
import { lookup } from "node:dns";
import { writeFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import { Agent as UndiciAgent } from "undici";
import { startMinio } from "../lib/minio.mjs";
import { ROOT } from "../lib/tools.mjs";

const { values } = parseArgs({ options: { gib: { type: "string", default: "1" }, rounds: { type: "string", default: "3" } } });
const MiB = 1024 * 1024;
const RANGE = 8 * MiB;
const CONCURRENCY = 4;
const BLOCK = 64 * MiB;
const SIZE = Math.round((Number(values.gib) * 1024 * MiB) / BLOCK) * BLOCK;
const ROUNDS = Number(values.rounds);
if (!(SIZE >= BLOCK) || !(ROUNDS >= 1)) throw new Error("--gib must be at least 0.0625 and --rounds at least 1");
const BUCKET = "http-clients";
const KEY = "big.bin";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);

const { LeanRequests } = await import(join(ROOT, "dist", "s3", "lean-requests.js"));

const minio = await startMinio();
try {
  const port = Number(new URL(minio.url).port);
  const credentials = { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey };
  const s3 = new S3Client({ endpoint: minio.url, region: "us-east-1", forcePathStyle: true, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  // The object: one random 64 MiB block repeated, so a range's expected bytes are a slice of it.
  const block = Buffer.alloc(BLOCK);
  for (let off = 0; off < BLOCK; off += 65536) createHash("sha512").update(String(off)).digest().copy(block, off);
  for (let off = 0; off < BLOCK; off += 64) block.writeUInt32LE(off, off);
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: KEY }));
  const parts = [];
  for (let n = 1; n <= SIZE / BLOCK; n++) {
    const { ETag } = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: KEY, UploadId, PartNumber: n, Body: block }));
    parts.push({ ETag, PartNumber: n });
  }
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: KEY, UploadId, MultipartUpload: { Parts: parts } }));
  s3.destroy();

  // Four range buffers, written once so their pages are in place before anything is measured.
  const buffers = Array.from({ length: CONCURRENCY }, () => Buffer.alloc(RANGE, 1));
  const signer = new SignatureV4({ service: "s3", region: "us-east-1", credentials, sha256: Sha256Ctor(), uriEscapePath: false, applyChecksum: false });
  const host = `127.0.0.1:${port}`;
  /** Signed headers of one ranged GET, signed the way the lean client signs. @param {string} range */
  const signed = async (range) =>
    (await signer.sign({ method: "GET", protocol: "http:", hostname: "127.0.0.1", port, path: `/${BUCKET}/${KEY}`, query: {}, headers: { host, range, "x-amz-content-sha256": EMPTY_SHA256 } })).headers;

  /** @typedef {(range: string, buf: Buffer) => Promise<number>} ReadRange */
  const lean = new LeanRequests({ protocol: "http:", host: "127.0.0.1", port, pathStyle: true, bucket: BUCKET, region: "us-east-1", credentials: async () => credentials, ca: undefined, lookup, maxSockets: 16, connectTimeoutMs: 10_000, requestTimeoutMs: 60_000 });
  /** @type {ReadRange} */
  const viaLean = async (range, buf) => {
    let off = 0;
    await lean.get(KEY, { Range: range }, {}, undefined, () => ({ space: () => buf.subarray(off), took: (/** @type {number} */ n) => void (off += n) }));
    return off;
  };

  const undici = new UndiciAgent({ connections: 16, pipelining: 1 });
  /** @type {ReadRange} */
  const viaUndici = async (range, buf) => {
    const headers = await signed(range);
    return new Promise((resolve, reject) => {
      let off = 0;
      let status = 0;
      undici.dispatch(
        { origin: `http://${host}`, path: `/${BUCKET}/${KEY}`, method: "GET", headers },
        {
          onRequestStart() {},
          onResponseStart(_c, code) {
            status = code;
          },
          onResponseData(_c, chunk) {
            chunk.copy(buf, off);
            off += chunk.length;
          },
          onResponseEnd() {
            status === 206 ? resolve(off) : reject(new Error(`undici: HTTP ${status}`));
          },
          onResponseError(_c, e) {
            reject(e);
          },
        },
      );
    });
  };

  const nodeAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  /** @type {ReadRange} */
  const viaNodeHttp = async (range, buf) => {
    const headers = await signed(range);
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: `/${BUCKET}/${KEY}`, method: "GET", headers, agent: nodeAgent }, (res) => {
        let off = 0;
        res.on("data", (/** @type {Buffer} */ chunk) => {
          chunk.copy(buf, off);
          off += chunk.length;
        });
        res.on("end", () => (res.statusCode === 206 ? resolve(off) : reject(new Error(`node:http: HTTP ${res.statusCode}`))));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  };

  /** Reads the whole object once; `check` compares every range with the block it must equal. @param {ReadRange} read @param {boolean} check */
  const readAll = async (read, check) => {
    let next = 0;
    const worker = async (/** @type {Buffer} */ buf) => {
      for (let start = next; start < SIZE; start = next) {
        next += RANGE;
        const got = await read(`bytes=${start}-${start + RANGE - 1}`, buf);
        if (got !== RANGE) throw new Error(`range at ${start}: ${got} bytes`);
        if (check && !buf.equals(block.subarray(start % BLOCK, (start % BLOCK) + RANGE))) throw new Error(`range at ${start}: bytes differ`);
      }
    };
    await Promise.all(buffers.map(worker));
  };

  const clients = /** @type {const} */ ([
    ["plugin's client", viaLean],
    ["undici 7 dispatch", viaUndici],
    ["node:http", viaNodeHttp],
  ]);
  for (const [name, read] of clients) {
    await readAll(read, true);
    log(`${name}: every byte checked`);
  }
  /** @type {Record<string, {mibps: number[], cpuPerGiB: number[]}>} */
  const runs = Object.fromEntries(clients.map(([n]) => [n, { mibps: [], cpuPerGiB: [] }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < clients.length; i++) {
      const [name, read] = /** @type {(typeof clients)[number]} */ (clients[(i + r) % clients.length]);
      globalThis.gc?.();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await readAll(read, false);
      const secs = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const cpuSecs = (cpu.user + cpu.system) / 1e6;
      const bucket = /** @type {{mibps: number[], cpuPerGiB: number[]}} */ (runs[name]);
      bucket.mibps.push(SIZE / MiB / secs);
      bucket.cpuPerGiB.push(cpuSecs / (SIZE / (1024 * MiB)));
      log(`round ${r + 1}: ${name}: ${(SIZE / MiB / secs).toFixed(0)} MiB/s, ${(cpuSecs / (SIZE / (1024 * MiB))).toFixed(2)} CPU-s/GiB (this process; MinIO's not counted)`);
    }
  }
  const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const ours = /** @type {{mibps: number[], cpuPerGiB: number[]}} */ (runs["plugin's client"]);
  const rows = clients.map(([name]) => {
    const r = /** @type {{mibps: number[], cpuPerGiB: number[]}} */ (runs[name]);
    return { client: name, mibps: Math.round(median(r.mibps)), cpuPerGiB: Number(median(r.cpuPerGiB).toFixed(2)), throughputVsOurs: Number((median(r.mibps) / median(ours.mibps)).toFixed(2)), cpuVsOurs: Number((median(r.cpuPerGiB) / median(ours.cpuPerGiB)).toFixed(2)) };
  });
  console.log(`\n${SIZE / MiB} MiB in ${RANGE / MiB} MiB ranges, ${CONCURRENCY} at a time, median of ${ROUNDS}, Node ${process.version}`);
  console.log("| client | MiB/s | CPU-s/GiB | throughput vs ours | CPU vs ours |\n|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.client} | ${r.mibps} | ${r.cpuPerGiB} | ${r.throughputVsOurs}× | ${r.cpuVsOurs}× |`);
  writeFileSync(join(ROOT, "bench", "results", "http-clients.json"), `${JSON.stringify({ date: new Date().toISOString(), node: process.version, bytes: SIZE, rangeBytes: RANGE, concurrency: CONCURRENCY, rounds: ROUNDS, rows }, null, 2)}\n`);
  lean.close();
  await undici.close();
  nodeAgent.destroy();
} finally {
  await minio.stop();
}

/** SHA-256 / HMAC-SHA-256 in the shape the signer asks for (as lean-requests.ts has it). */
function Sha256Ctor() {
  /** @param {any} d */
  const bytes = (d) => (typeof d === "string" ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  return class {
    /** @param {any} [secret] */
    constructor(secret) {
      this.h = secret === undefined ? createHash("sha256") : createHmac("sha256", bytes(secret));
    }
    /** @param {any} d */
    update(d) {
      this.h.update(bytes(d));
    }
    digest() {
      return Promise.resolve(new Uint8Array(this.h.digest()));
    }
  };
}
