// Argo's own client is the judge: a Go program built on Argo's
// workflow/artifacts/plugin package (test/argo-client) drives the running
// plugin through plugin.NewDriver and compares every byte it gets back.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { ROOT, type PluginProcess, startPlugin } from "../support/plugin.js";

const run = promisify(execFile);
let minio: MinioServer;
let plugin: PluginProcess;
let work: string;
let binary: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "argo-client-"));
  binary = join(work, "argo-client");
  // Build first: on a new machine this downloads Argo's module graph.
  const build = run("go", ["build", "-o", binary, "."], {
    cwd: join(ROOT, "test", "argo-client"),
    env: { ...process.env, GOFLAGS: "-buildvcs=false" },
    maxBuffer: 32 * 1024 * 1024,
  });
  minio = await startMinio();
  const s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: "argo" }));
  plugin = await startPlugin(rootKeysEnv(minio));
  await build;
});

afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

it("passes every step of the Go program on Argo's plugin driver", async () => {
  // Small parts so the 5 MiB and 9 MiB artifacts take the multipart and ranged paths.
  const cfgFile = join(work, "config.yaml");
  writeFileSync(
    cfgFile,
    `endpoint: ${minio.endpoint}\nbucket: argo\ninsecure: true\ntuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 1\n`,
  );
  const result = await run(
    binary,
    ["-socket", plugin.socket, "-config-file", cfgFile, "-prefix", `run-${Date.now()}`, "-workdir", work],
    {
      maxBuffer: 16 * 1024 * 1024,
    },
  ).catch((e: { stdout?: string; stderr?: string; code?: number }) => e);
  const stdout = result.stdout ?? "";
  process.stdout.write(stdout);
  expect(stdout, `${stdout}\n${result.stderr ?? ""}`).toMatch(/^11 passed, 0 failed$/m);
  expect(stdout).not.toContain("FAIL");
  const s3 = adminClient(minio);
  const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: "argo" }));
  expect(uploads.Uploads ?? []).toEqual([]);
}, 600_000);
