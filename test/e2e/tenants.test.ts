// The shared argo-server sidecar between authors (issue #23): the plugin in
// shared mode inside a 256 MiB memory cgroup (the limit deploy/ gives it),
// attacked through its configuration as any workflow author can:
//  1. as many OpenStreams as it has transfer slots, to a store that accepts
//     and never answers (requestTimeoutSeconds a day, a bucket per call);
//  2. 40 concurrent ListObjects and IsDirectory against 7.9 MiB answers;
//  3. the same OpenStreams spread over two ports of one host, then over
//     three hosts, against the operator's named store (issue #34 case 1);
//  4. twelve slow readers of a large object on the victim's own store
//     (issue #34 case 2: their read-ahead held the buffers; the victim's
//     8 MiB OpenStream waited 3.1 s before, 0.7 s after, in one run here).
// Each time another user's call to a healthy store (MinIO) must be served at
// once, with the right bytes, and nothing may be OOM-killed.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type Server, type Socket, createServer as createNetServer } from "node:net";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoryCgroup } from "../../scripts/lib/memcg.mjs";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { tally } from "../support/ledger.js";
import { adminClient } from "../support/minio-access.js";
import { within } from "../support/bounded.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot)
  process.stdout.write("tenants: skipped, the plugin's 256 MiB memory cgroup needs root (CI runs as root)\n");

const MiB = 1024 * 1024;
let minio: MinioServer;
let hung: Server;
let hungPort: number;
const hungSockets = new Set<Socket>();
// The author's other stores that never answer: a second port of hung's host, and two more hosts.
const moreHung: Server[] = [];
const moreHungAt: string[] = [];
let fat: HttpServer;
let fatPort: number;
let fatAnswers = 0;
let endless: HttpServer;
let endlessPort: number;
let endlessPages = 0;
let drip: Server;
let dripPort: number;
const dripSockets = new Set<Socket>();
const victimBytes = randomBytes(8 * MiB + 7);
const bigBytes = randomBytes(96 * MiB);

/** A ListObjectsV2 answer of `bytes`, far more keys than any page may hold. */
function fatListing(bytes: number): Buffer {
  const entry = (i: number) =>
    `<Contents><Key>k/${String(i).padStart(8, "0")}-${"x".repeat(1000)}</Key><Size>1</Size><ETag>"e"</ETag></Contents>`;
  const parts = [
    '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>k/</Prefix><IsTruncated>false</IsTruncated>',
  ];
  let size = parts[0]!.length;
  for (let i = 0; size < bytes - 100; i++) {
    const e = entry(i);
    parts.push(e);
    size += e.length;
  }
  parts.push("</ListBucketResult>");
  return Buffer.from(parts.join(""));
}

beforeAll(async () => {
  if (!isRoot) return;
  minio = await startMinio();
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: "victim" }));
  await adminClient(minio).send(new PutObjectCommand({ Bucket: "victim", Key: "v.bin", Body: victimBytes }));
  await adminClient(minio).send(new PutObjectCommand({ Bucket: "victim", Key: "dir/a.txt", Body: "a" }));
  await adminClient(minio).send(new PutObjectCommand({ Bucket: "victim", Key: "big.bin", Body: bigBytes }));
  // Accepts and never answers; on 127.0.0.2, a host of its own beside MinIO's 127.0.0.1.
  const hangs = () =>
    createNetServer((s) => {
      hungSockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => hungSockets.delete(s));
    });
  hung = hangs();
  await new Promise<void>((r) => hung.listen(0, "127.0.0.2", r));
  hungPort = (hung.address() as { port: number }).port;
  for (const host of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
    const srv = hangs();
    await new Promise<void>((r) => srv.listen(0, host, r));
    moreHung.push(srv);
    moreHungAt.push(`${host}:${(srv.address() as { port: number }).port}`);
  }
  const body = fatListing(7.9 * MiB);
  fat = createHttpServer((req, res) => {
    fatAnswers++;
    req.resume();
    res.writeHead(200, { "content-type": "application/xml", "content-length": body.length });
    res.end(body);
  });
  await new Promise<void>((r) => fat.listen(0, "127.0.0.1", r));
  fatPort = (fat.address() as { port: number }).port;
  // One byte a second, forever: the answer head when the request asks for "head-drip", else a listing's body.
  drip = createNetServer((sock) => {
    dripSockets.add(sock);
    sock.on("error", () => undefined);
    sock.once("data", (req: Buffer) => {
      const text = req.toString().includes("head-drip")
        ? "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nX-Slow: " + "a".repeat(100000)
        : 'HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n<?xml version="1.0"?><ListBucketResult>' +
          " ".repeat(100000);
      let i = 0;
      const head = text.indexOf("\r\n\r\n");
      sock.write(text.slice(0, head >= 0 ? head + 4 : 17));
      i = head >= 0 ? head + 4 : 17;
      const t = setInterval(() => (sock.destroyed ? clearInterval(t) : sock.write(text[i++] ?? " ")), 1000);
      sock.on("close", () => {
        clearInterval(t);
        dripSockets.delete(sock);
      });
    });
  });
  await new Promise<void>((r) => drip.listen(0, "127.0.0.1", r));
  dripPort = (drip.address() as { port: number }).port;
  // A listing that never ends: every page one key, promptly, and "there is more".
  endless = createHttpServer((req, res) => {
    endlessPages++;
    req.resume();
    const n = endlessPages;
    const body = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>k/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>t${n}</NextContinuationToken><Contents><Key>k/f${n}</Key><Size>1</Size><ETag>"x"</ETag></Contents></ListBucketResult>`;
    res.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => endless.listen(0, "127.0.0.1", r));
  endlessPort = (endless.address() as { port: number }).port;
}, 600_000);

afterAll(async () => {
  for (const s of hungSockets) s.destroy();
  hung?.close();
  for (const srv of moreHung) srv.close();
  for (const s of dripSockets) s.destroy();
  drip?.close();
  endless?.closeAllConnections();
  endless?.close();
  fat?.closeAllConnections();
  fat?.close();
  await minio?.stop();
});

interface Shared {
  plugin: PluginProcess;
  slots: number;
  oomKills: () => number;
  stop: () => Promise<void>;
}

async function sharedPlugin(extraEnv: Record<string, string> = {}): Promise<Shared> {
  const cgroup = memoryCgroup(`argo-s3-tenants-${process.pid}-${Date.now()}`, 256 * MiB);
  const dir = mkdtempSync(join(tmpdir(), "tenants-"));
  const plugin = await startPlugin(
    {
      ARGO_S3_PLUGIN_SHARED: "true",
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: `127.0.0.2:${hungPort},${moreHungAt.join(",")},127.0.0.1:${fatPort},127.0.0.1:${dripPort},127.0.0.1:${endlessPort},${minio.endpoint}`,
      ARGO_S3_PLUGIN_GRACE_SECONDS: "1",
      AWS_ACCESS_KEY_ID: minio.accessKey,
      AWS_SECRET_ACCESS_KEY: minio.secretKey,
      AWS_EC2_METADATA_DISABLED: "true",
      LOG_LEVEL: "info",
      ...extraEnv,
    },
    dir,
    [],
    undefined,
    cgroup.wrap,
  );
  const ready = JSON.parse(
    plugin
      .output()
      .split("\n")
      .find((l) => l.includes('"msg":"ready"'))!,
  ) as { maxConcurrentTransfers: number; memoryLimitMiB: number };
  expect(ready.memoryLimitMiB).toBe(256);
  return {
    plugin,
    slots: ready.maxConcurrentTransfers,
    oomKills: cgroup.oomKills,
    stop: async () => {
      await plugin.stop("SIGTERM");
      cgroup.remove();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const store = (endpoint: string, bucket: string, extra = "") =>
  `endpoint: ${endpoint}\ninsecure: true\nbucket: ${bucket}\n${extra}`;

/** Another user's calls to a healthy store: served, byte for byte; how long each took. */
async function victim(p: PluginProcess, work: string): Promise<{ loadMs: number; streamMs: number; listMs: number }> {
  const cfg = store(minio.endpoint, "victim");
  let t = Date.now();
  const loaded = await within(p.client.load(artifact(cfg, "v.bin"), join(work, "v.bin")), 20_000, "the victim's Load");
  const loadMs = Date.now() - t;
  expect(loaded).toEqual({ success: true, error: "" });
  expect(readFileSync(join(work, "v.bin")).equals(victimBytes)).toBe(true);
  t = Date.now();
  const streamed = await within(p.client.openStream(artifact(cfg, "v.bin")), 20_000, "the victim's OpenStream");
  const streamMs = Date.now() - t;
  expect(streamed.data.equals(victimBytes)).toBe(true);
  t = Date.now();
  expect(await within(p.client.listObjects(artifact(cfg, "dir")), 20_000, "the victim's ListObjects")).toEqual({
    objects: ["dir/a.txt"],
    error: "",
  });
  const listMs = Date.now() - t;
  return { loadMs, streamMs, listMs };
}

describe.skipIf(!isRoot)("the shared sidecar between authors, in a 256 MiB cgroup", () => {
  it("an author holding every slot's worth of OpenStreams to a store that never answers leaves another user's calls served at once", async () => {
    const s = await sharedPlugin();
    const work = mkdtempSync(join(tmpdir(), "victim-"));
    try {
      // A bucket per call: every call its own tenant, all on one endpoint.
      const attacks = Array.from({ length: s.slots }, (_, i) =>
        s.plugin.client
          .openStream(
            artifact(store(`127.0.0.2:${hungPort}`, `b${i}`, "tuning: {requestTimeoutSeconds: 86400}\n"), "k"),
            { discard: true },
          )
          .catch((e: Error) => e),
      );
      tally({ suite: "hostile: one author's unanswering store vs other users", hostileTried: s.slots });
      // The endpoint holds all it may (all but a quarter of the slots), the rest of the author's calls wait.
      const cap = s.slots - Math.ceil(s.slots / 4);
      const deadline = Date.now() + 15_000;
      while (hungSockets.size < cap && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(hungSockets.size).toBeGreaterThanOrEqual(cap);
      await new Promise((r) => setTimeout(r, 300));
      expect(hungSockets.size, "no more than the cap").toBeLessThanOrEqual(cap);
      await new Promise((r) => setTimeout(r, 300));
      const times = await victim(s.plugin, work);
      process.stdout.write(
        `tenants: victim served beside ${s.slots} hung OpenStreams: Load ${times.loadMs} ms, OpenStream ${times.streamMs} ms, ListObjects ${times.listMs} ms\n`,
      );
      expect(s.oomKills()).toBe(0);
      tally({ suite: "hostile: one author's unanswering store vs other users", hostileRefused: s.slots });
      void attacks;
    } finally {
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  it("an author's OpenStreams over two ports of one host hold three quarters of the slots; over three hosts, with the operator's store named, half; another user's calls are served either way", async () => {
    const hosts = [`127.0.0.2:${hungPort}`, moreHungAt[0]!, moreHungAt[1]!, moreHungAt[2]!];
    for (const [operator, endpoints, share] of [
      ["", hosts.slice(0, 2), 3 / 4],
      [minio.endpoint, hosts, 1 / 2],
    ] as const) {
      // What an earlier plugin left (its sockets close as it exits) is not this plugin's.
      for (const sock of hungSockets) sock.destroy();
      hungSockets.clear();
      const s = await sharedPlugin(operator ? { ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS: operator } : {});
      const work = mkdtempSync(join(tmpdir(), "victim-"));
      try {
        const suite = `hostile: one author's unanswering stores on ${endpoints.length} endpoints vs other users`;
        const attacks = Array.from({ length: s.slots }, (_, i) =>
          s.plugin.client
            .openStream(
              artifact(
                store(endpoints[i % endpoints.length]!, `b${i}`, "tuning: {requestTimeoutSeconds: 86400}\n"),
                "k",
              ),
              { discard: true },
            )
            .catch((e: Error) => e),
        );
        tally({ suite, hostileTried: s.slots });
        const cap = s.slots - Math.ceil(s.slots * (1 - share));
        const deadline = Date.now() + 15_000;
        while (hungSockets.size < cap && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(hungSockets.size).toBeGreaterThanOrEqual(cap);
        await new Promise((r) => setTimeout(r, 500));
        expect(hungSockets.size, `no more than ${cap} of ${s.slots} slots over ${endpoints.join(", ")}`).toBe(cap);
        const times = await victim(s.plugin, work);
        process.stdout.write(
          `tenants: victim served beside ${cap} hung OpenStreams over ${endpoints.length} endpoints${operator ? " (operator's store named)" : ""}: Load ${times.loadMs} ms, OpenStream ${times.streamMs} ms, ListObjects ${times.listMs} ms\n`,
        );
        expect(s.oomKills()).toBe(0);
        tally({ suite, hostileRefused: s.slots });
        void attacks;
      } finally {
        await s.stop();
        rmSync(work, { recursive: true, force: true });
      }
    }
  }, 180_000);

  it("slow readers of a large artifact on the same store as the victim hold no more than their share of the buffers: the victim's calls are served at once", async () => {
    const s = await sharedPlugin();
    const work = mkdtempSync(join(tmpdir(), "victim-"));
    const readers = 12;
    let stop = false;
    try {
      // Honest store, slow clients: each takes a frame every 300 ms, as a UI user on a slow link.
      const slow = Array.from({ length: readers }, () =>
        s.plugin.client
          .openStream(artifact(store(minio.endpoint, "victim"), "big.bin"), {
            discard: true,
            onFrame: () => (stop ? undefined : new Promise<void>((r) => setTimeout(r, 300))),
          })
          .catch((e: Error) => e),
      );
      tally({ suite: "hostile: slow readers vs other users", hostileTried: readers });
      // Let them fill what they may.
      await new Promise((r) => setTimeout(r, 3000));
      const times = await victim(s.plugin, work);
      process.stdout.write(
        `tenants: victim served beside ${readers} slow readers of a 96 MiB object on its own store: Load ${times.loadMs} ms, OpenStream ${times.streamMs} ms, ListObjects ${times.listMs} ms\n`,
      );
      expect(s.oomKills()).toBe(0);
      tally({ suite: "hostile: slow readers vs other users", hostileRefused: readers });
      stop = true;
      void slow;
    } finally {
      stop = true;
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  }, 180_000);

  it("40 concurrent ListObjects and IsDirectory against 7.9 MiB answers: refused, no OOM kill, another user's calls served", async () => {
    const s = await sharedPlugin();
    const work = mkdtempSync(join(tmpdir(), "victim-"));
    try {
      const cfg = store(`127.0.0.1:${fatPort}`, "b");
      const attacks = Array.from({ length: 40 }, (_, i) =>
        (i % 2 === 0
          ? s.plugin.client.listObjects(artifact(cfg, "k"))
          : s.plugin.client.isDirectory(artifact(cfg, "k"))
        ).catch((e: Error) => ({ error: `the call failed: ${e.message}` })),
      );
      tally({ suite: "hostile: 7.9 MiB listing answers", hostileTried: 40 });
      const times = await victim(s.plugin, work);
      const results = await within(Promise.all(attacks), 90_000, "the 40 hostile listings");
      for (const r of results) expect(r.error).toMatch(/larger than|keys where at most/);
      tally({ suite: "hostile: 7.9 MiB listing answers", hostileRefused: 40 });
      process.stdout.write(
        `tenants: victim served beside 40 fat listings: Load ${times.loadMs} ms, OpenStream ${times.streamMs} ms, ListObjects ${times.listMs} ms; ${fatAnswers} fat answers sent\n`,
      );
      expect(s.oomKills()).toBe(0);
      expect(s.plugin.proc.exitCode).toBeNull();
    } finally {
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  }, 180_000);

  it("a listing that never ends (one key a page, always truncated) ends at ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS, naming the bound, the bucket and the endpoint", async () => {
    const s = await sharedPlugin({ ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS: "3" });
    try {
      tally({ suite: "hostile: a listing that never ends", hostileTried: 1 });
      const before = endlessPages;
      const res = await within(
        s.plugin.client
          .listObjects(artifact(store(`127.0.0.1:${endlessPort}`, "b"), "k"))
          .catch((e: Error) => ({ objects: [], error: `the call failed: ${e.message}` })),
        30_000,
        "the endless ListObjects",
      );
      expect(res.error).toMatch(
        new RegExp(
          `ListObjects of key "k" in bucket b \\(endpoint http://127\\.0\\.0\\.1:${endlessPort}\\) did not finish within 3 s, the bound the operator set for it \\(ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS\\)`,
        ),
      );
      expect(endlessPages - before, "it did read pages until the bound").toBeGreaterThan(1);
      const after = endlessPages;
      await new Promise((r) => setTimeout(r, 1000));
      expect(endlessPages, "no page is asked for after the call ended").toBe(after);
      tally({ suite: "hostile: a listing that never ends", hostileRefused: 1 });
    } finally {
      await s.stop();
    }
  }, 60_000);

  it("a store that drips its answer a byte a second is cut at requestTimeoutSeconds, head or body, with an error naming the endpoint", async () => {
    const s = await sharedPlugin();
    try {
      const cfg = store(`127.0.0.1:${dripPort}`, "b", "tuning: {requestTimeoutSeconds: 3, maxAttempts: 1}\n");
      for (const key of ["body-drip", "head-drip"]) {
        tally({ suite: "hostile: a store dripping its answers", hostileTried: 2 });
        const t = Date.now();
        const listed = await within(
          s.plugin.client.listObjects(artifact(cfg, key)),
          30_000,
          `ListObjects of a ${key} store`,
        );
        const isDir = await within(
          s.plugin.client.isDirectory(artifact(cfg, key)),
          30_000,
          `IsDirectory of a ${key} store`,
        );
        const ms = Date.now() - t;
        for (const r of [listed, isDir]) {
          expect(r.error, key).toContain(`127.0.0.1:${dripPort}`);
          expect(r.error, key).toMatch(/within 3 s|timed? ?out|Timeout/i);
        }
        expect(ms, key).toBeLessThan(20_000);
        tally({ suite: "hostile: a store dripping its answers", hostileRefused: 2 });
      }
    } finally {
      await s.stop();
    }
  }, 120_000);

  it("a CompleteMultipartUpload that S3 keeps open with whitespace for longer than requestTimeoutSeconds still completes the Save", async () => {
    // S3 answers a Complete's head at once, then sends a space now and then while it assembles the object.
    let completed = false;
    const slow = createHttpServer((req, res) => {
      const url = req.url ?? "";
      req.resume();
      req.on("end", () => {
        if (req.method === "POST" && url.includes("uploads")) {
          res
            .writeHead(200, { "content-type": "application/xml" })
            .end(
              '<?xml version="1.0"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>',
            );
        } else if (req.method === "PUT" && url.includes("partNumber=")) {
          res.writeHead(200, { etag: `"e${/partNumber=(\d+)/.exec(url)?.[1]}"` }).end();
        } else if (req.method === "POST" && url.includes("uploadId=u1")) {
          res.writeHead(200, { "content-type": "application/xml" });
          res.write('<?xml version="1.0" encoding="UTF-8"?>\n');
          const t = setInterval(() => res.write(" "), 250);
          setTimeout(() => {
            clearInterval(t);
            completed = true;
            res.end(
              '<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"x-2"</ETag></CompleteMultipartUploadResult>',
            );
          }, 3500);
        } else res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    const port = (slow.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), "cmu-"));
    const p = await startPlugin({
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "y",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    try {
      writeFileSync(join(dir, "f.bin"), randomBytes(6 * MiB));
      const cfg = `endpoint: 127.0.0.1:${port}\ninsecure: true\nbucket: b\ntuning: {requestTimeoutSeconds: 2, maxAttempts: 1, checksum: none, partSizeMiB: 5, multipartThresholdMiB: 5}\n`;
      const r = await within(p.client.save(artifact(cfg, "k"), join(dir, "f.bin")), 30_000, "the Save");
      expect(r, p.output()).toEqual({ success: true, error: "" });
      expect(completed).toBe(true);
    } finally {
      await p.stop();
      slow.closeAllConnections();
      slow.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
