// A store in a region other than the default (MinIO with MINIO_SITE_REGION):
// with the region configured every RPC works, byte for byte, through the lean
// data path too; without it the store refuses the signature and the error
// says which region to configure.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { within } from "../support/bounded.js";
import { rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let plugin: PluginProcess;
let work: string;
const cfg = (region?: string) =>
  `endpoint: ${minio.endpoint}\nbucket: regional\ninsecure: true\ncreateBucketIfNotPresent: {}\n${region ? `region: ${region}\n` : ""}`;

beforeAll(async () => {
  minio = await startMinio({ env: { MINIO_SITE_REGION: "eu-west-1" } });
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "region-"));
}, 120_000);

afterAll(async () => {
  await plugin?.stop();
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

it("with the store's region configured: Save, Load and OpenStream, small and multipart, byte for byte", async () => {
  for (const size of [1000, 40 * 1024 * 1024 + 3]) {
    const data = randomBytes(size);
    const src = join(work, `in-${size}`);
    writeFileSync(src, data);
    const a = artifact(cfg("eu-west-1"), `r/${size}.bin`);
    expect(await within(plugin.client.save(a, src), 60_000, "Save")).toEqual({ success: true, error: "" });
    const dest = join(work, `out-${size}`);
    expect(await within(plugin.client.load(a, dest), 60_000, "Load")).toEqual({ success: true, error: "" });
    expect(readFileSync(dest).equals(data)).toBe(true);
    expect((await within(plugin.client.openStream(a), 60_000, "OpenStream")).data.equals(data)).toBe(true);
  }
});

it("without it: the store's refusal names the region to configure", async () => {
  const src = join(work, "plain.txt");
  writeFileSync(src, "x");
  const res = await within(plugin.client.save(artifact(cfg(), "r/plain.txt"), src), 60_000, "Save");
  expect(res.success).toBe(false);
  expect(res.error).toContain("AuthorizationHeaderMalformed");
  expect(res.error).toContain("set `region: eu-west-1` in the configuration");
  // A Load (lean GET after the SDK's HEAD, both signed for the default region) is refused too, and says so.
  const load = await within(plugin.client.load(artifact(cfg(), "r/1000.bin"), join(work, "never")), 60_000, "Load");
  expect(load.success).toBe(false);
  expect(load.error).toMatch(/wrong region|region/);
});
