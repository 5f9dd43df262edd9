// A store that answers every GET at 2 KiB/s: above the plugin's general
// minimum body rate (1 KiB/s, pace.ts), so in a workflow's pod a small object
// still loads; in the shared argo-server sidecar, where any author picks the
// store, each exchange must also end within a bound whatever pace the store
// keeps, so the sidecar holds bodies to 64 KiB/s and a 1 MiB range is cut in
// seconds instead of running for eight and a half minutes (issue #34).
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type HostileS3, startHostileS3 } from "../support/hostile-s3.js";
import { within } from "../support/bounded.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const keys = {
  AWS_ACCESS_KEY_ID: "AKIAHOSTILETEST00000",
  AWS_SECRET_ACCESS_KEY: "hostile-test-secret-key-0000000000000000",
};
let s3: HostileS3;
let work: string;
const plugins: PluginProcess[] = [];

beforeAll(async () => {
  s3 = await startHostileS3("pace");
  s3.objects.set("small", { data: randomBytes(8 * 1024), crc: false });
  s3.objects.set("large", { data: randomBytes(1024 * 1024), crc: false });
  s3.fault = () => "trickle";
  work = mkdtempSync(join(tmpdir(), "pace-"));
});

afterAll(async () => {
  for (const p of plugins) await p.stop();
  await s3?.stop();
  rmSync(work, { recursive: true, force: true });
});

const cfg = () =>
  `endpoint: ${s3.endpoint}\nbucket: pace\ninsecure: true\nregion: us-east-1\ntuning: {requestTimeoutSeconds: 2, maxAttempts: 1}\n`;

it("in a workflow's pod a store at 2 KiB/s is slow, not refused: an 8 KiB object loads whole", async () => {
  const plugin = await startPlugin({ ...keys, ARGO_S3_PLUGIN_SHARED: "false" });
  plugins.push(plugin);
  const dest = join(work, "small");
  expect(await within(plugin.client.load(artifact(cfg(), "small"), dest), 60_000, "the trickled Load")).toEqual({
    success: true,
    error: "",
  });
  expect(readFileSync(dest).equals(s3.objects.get("small")!.data)).toBe(true);
}, 90_000);

it("in the shared sidecar a body at 2 KiB/s is cut at the shared minimum rate, naming the endpoint: OpenStream and Load", async () => {
  const plugin = await startPlugin({
    ...keys,
    ARGO_S3_PLUGIN_SHARED: "true",
    ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: s3.endpoint,
  });
  plugins.push(plugin);
  // The error travels in OpenStream's error frame.
  const streamed = await within(
    plugin.client.openStream(artifact(cfg(), "large")).then(
      (r) => r.frames.map((f) => f.error).join(""),
      (e: Error) => e.message,
    ),
    30_000,
    "the trickled OpenStream",
  );
  expect(streamed).toContain(s3.endpoint);
  expect(streamed).toMatch(/below the 65536 bytes\/s accepted/);
  const loaded = await within(
    plugin.client.load(artifact(cfg(), "large"), join(work, "large")),
    30_000,
    "the trickled Load",
  );
  expect(loaded.success).toBe(false);
  expect(loaded.error).toMatch(/below the 65536 bytes\/s accepted/);
}, 90_000);
