// The configurations whose GETs go through the AWS SDK instead of the lean
// client (src/s3/targets.ts leanGetRoute), run against MinIO: the endpoint from
// AWS_ENDPOINT_URL_S3, and the FIPS and dual-stack switches. (AWS without a
// configured region needs S3's redirect to a bucket's region, which only AWS
// answers; its routing is a unit test, test/unit/lean-get-route.test.ts.)
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { within } from "../support/bounded.js";
import { rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const MiB = 1024 * 1024;
let minio: MinioServer;
let work: string;
const plugins: PluginProcess[] = [];

beforeAll(async () => {
  minio = await startMinio();
  work = mkdtempSync(join(tmpdir(), "sdk-route-"));
}, 120_000);

afterAll(async () => {
  for (const p of plugins) await p.stop();
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function plugin(env: Record<string, string>): Promise<PluginProcess> {
  const p = await startPlugin({ ...rootKeysEnv(minio), ...env });
  plugins.push(p);
  return p;
}

describe("AWS_ENDPOINT_URL_S3 (no endpoint in the configuration)", () => {
  let p: PluginProcess;
  const cfg =
    "bucket: sdk-route\naddressingStyle: path\nregion: us-east-1\ncreateBucketIfNotPresent: {}\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\n";
  beforeAll(async () => {
    p = await plugin({ AWS_ENDPOINT_URL_S3: minio.url });
  });

  it("Save, Load and OpenStream, small, empty and multipart, byte for byte, every GET through the SDK", async () => {
    for (const size of [0, 1000, 12 * MiB + 5]) {
      const data = randomBytes(size);
      const src = join(work, `in-${size}`);
      writeFileSync(src, data);
      const a = artifact(cfg, `env/${size}.bin`);
      expect(await within(p.client.save(a, src), 60_000, "Save")).toEqual({ success: true, error: "" });
      const dest = join(work, `out-${size}`);
      expect(await within(p.client.load(a, dest), 60_000, "Load")).toEqual({ success: true, error: "" });
      expect(readFileSync(dest).equals(data), `Load of ${size} bytes`).toBe(true);
      expect(
        (await within(p.client.openStream(a), 60_000, "OpenStream")).data.equals(data),
        `OpenStream of ${size} bytes`,
      ).toBe(true);
    }
    const gets = p
      .output()
      .split("\n")
      .filter((l) => l.includes('"s3":"GetObject"'));
    expect(gets.length).toBeGreaterThan(0);
    expect(gets.filter((l) => l.includes('"via":"lean"'))).toEqual([]);
  });

  it("a missing object is 'not found', and messages name the endpoint from the environment", async () => {
    const res = await within(p.client.load(artifact(cfg, "env/none.bin"), join(work, "none")), 60_000, "Load");
    expect(res.success).toBe(false);
    expect(res.error).toMatch(/not found/i);
    expect(res.error).toContain(new URL(minio.url).host);
  });
});

// The SDK's endpoint rules refuse a custom endpoint together with these switches; the error must say
// which setting to change instead of hanging or sending the request elsewhere.
describe.each([
  ["AWS_USE_FIPS_ENDPOINT", /FIPS/i],
  ["AWS_USE_DUALSTACK_ENDPOINT", /dual-?stack/i],
] as const)("%s=true with a configured endpoint", (name, says) => {
  it("fails with an error that names the switch", async () => {
    const p = await plugin({ [name]: "true" });
    const src = join(work, `sw-${name}`);
    writeFileSync(src, "x");
    const cfg = `endpoint: ${minio.endpoint}\nbucket: sdk-route\ninsecure: true\nregion: us-east-1\n`;
    const save = await within(p.client.save(artifact(cfg, "sw/x"), src), 60_000, "Save");
    expect(save.success).toBe(false);
    expect(save.error).toMatch(says);
    expect(save.error).toContain(name);
    const load = await within(
      p.client.load(artifact(cfg, "env/1000.bin"), join(work, `sw-out-${name}`)),
      60_000,
      "Load",
    );
    expect(load.success).toBe(false);
    expect(load.error).toContain(name);
  });
});
