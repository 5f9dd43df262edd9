// Memory stays bounded by configuration, not by object size: a slow OpenStream
// client, a big SaveStream and a big Load each keep the plugin's resident set
// far below the object's size. (Bounds, not timings: RSS is read from /proc.)
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const MiB = 1024 * 1024;
const OBJECT = 256 * MiB;
let minio: MinioServer;
let plugin: PluginProcess;
let work: string;
let baseline: number;
// Window: 2 ranges of 8 MiB; budget 32 MiB for all buffers.
const cfg = () =>
  `endpoint: ${minio.endpoint}\nbucket: memory\ninsecure: true\ntuning: {partSizeMiB: 8, partConcurrency: 2}\n`;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
}

/** Samples the plugin's RSS while `run` goes on; returns the peak. */
async function peakDuring(run: () => Promise<unknown>): Promise<number> {
  let peak = rssMiB(plugin.proc.pid!);
  const timer = setInterval(() => (peak = Math.max(peak, rssMiB(plugin.proc.pid!))), 20);
  try {
    await run();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssMiB(plugin.proc.pid!));
}

beforeAll(async () => {
  minio = await startMinio();
  const s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: "memory" }));
  plugin = await startPlugin({ ...rootKeysEnv(minio), ARGO_S3_PLUGIN_BUFFER_MIB: "32" });
  work = mkdtempSync(join(tmpdir(), "memory-"));
  const block = randomBytes(8 * MiB);
  const parts: Buffer[] = [];
  for (let i = 0; i < OBJECT / block.length; i++) parts.push(block);
  writeFileSync(join(work, "big.bin"), Buffer.concat(parts));
  expect(await plugin.client.save(artifact(cfg(), "big.bin"), join(work, "big.bin"))).toEqual({
    success: true,
    error: "",
  });
  baseline = rssMiB(plugin.proc.pid!);
}, 300_000);

afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

it("a slow OpenStream consumer never makes the plugin buffer the object", async () => {
  let received = 0;
  const peak = await peakDuring(() =>
    plugin.client.openStream(artifact(cfg(), "big.bin"), {
      discard: true,
      onFrame: async (len) => {
        received += len;
        // Slow reader: a pause every 4 MiB, so the stream takes seconds while S3 could send it at once.
        if (received % (4 * MiB) === 0) await new Promise((r) => setTimeout(r, 25));
      },
    }),
  );
  expect(received).toBe(OBJECT);
  // Buffering the object would add 256 MiB; the window and budget allow a few tens.
  expect(peak - baseline).toBeLessThan(96);
}, 300_000);

it("SaveStream and Load of the same object stay far below its size", async () => {
  const block = readFileSync(join(work, "big.bin")).subarray(0, 2 * MiB);
  async function* chunks() {
    for (let i = 0; i < OBJECT / block.length; i++) yield block;
  }
  const streamPeak = await peakDuring(async () =>
    expect((await plugin.client.saveStream(artifact(cfg(), "streamed.bin"), chunks())).success).toBe(true),
  );
  expect(streamPeak - baseline).toBeLessThan(96);
  const loadPeak = await peakDuring(async () =>
    expect((await plugin.client.load(artifact(cfg(), "big.bin"), join(work, "out.bin"))).success).toBe(true),
  );
  expect(loadPeak - baseline).toBeLessThan(96);
}, 300_000);
