// No Docker engine runs here, so this test replays the Dockerfile's recipe by
// hand: a production-only install from the lockfile into a clean directory,
// the built output and proto copied beside it, then a Save/Load round trip
// through the plugin started from there, as the image's ENTRYPOINT would.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { imageEnv } from "../../scripts/lib/image-env.mjs";
import { rootKeysEnv } from "../support/minio-access.js";
import { ArtifactClient, ROOT, artifact } from "../support/plugin.js";
import { spawn } from "node:child_process";
import { within } from "../support/bounded.js";

const run = promisify(execFile);
let minio: MinioServer;
let app: string;

/** The files the final stage copies, read from the Dockerfile itself. */
function finalStageCopies(): string[] {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const final = text.slice(text.lastIndexOf("\nFROM "));
  return [...final.matchAll(/^COPY (?:--from=\S+ )?(\S+) /gm)].map((m) => m[1]!);
}

beforeAll(async () => {
  minio = await startMinio();
  app = mkdtempSync(join(tmpdir(), "image-"));
  cpSync(join(ROOT, "package.json"), join(app, "package.json"));
  cpSync(join(ROOT, "package-lock.json"), join(app, "package-lock.json"));
  await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: app, maxBuffer: 16 * 1024 * 1024 });
  cpSync(join(ROOT, "dist"), join(app, "dist"), { recursive: true });
  cpSync(join(ROOT, "proto"), join(app, "proto"), { recursive: true });
}, 300_000);

afterAll(async () => {
  await minio?.stop();
  rmSync(app, { recursive: true, force: true });
});

it("the final stage copies exactly node_modules, dist, proto and package.json", () => {
  expect(finalStageCopies().sort()).toEqual(["/app/node_modules", "/src/dist", "package.json", "proto"].sort());
});

it("the final stage sets production mode and glibc's fixed mmap threshold", () => {
  expect(imageEnv()).toEqual({ NODE_ENV: "production", MALLOC_MMAP_THRESHOLD_: "131072" });
});

it("a production-only install has no dev tools and runs the plugin: Save/Load round trip, SIGTERM → exit 0", async () => {
  for (const dev of ["typescript", "vitest", "vite"]) expect(existsSync(join(app, "node_modules", dev))).toBe(false);
  const socket = join(app, "tmp", "artifact-plugins", "s3", "socket");
  const proc = spawn(process.execPath, [join(app, "dist", "main.js"), socket], {
    cwd: app,
    env: { PATH: process.env["PATH"] ?? "", ...imageEnv(), ...rootKeysEnv(minio) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", r));
  for (let i = 0; i < 100 && !out.includes('"msg":"ready"'); i++) await new Promise((r) => setTimeout(r, 100));
  expect(out).toContain('"msg":"ready"');
  const client = new ArtifactClient(socket);
  const cfg = `endpoint: ${minio.endpoint}\nbucket: image\ninsecure: true\ncreateBucketIfNotPresent: {}\n`;
  const data = randomBytes(3 * 1024 * 1024 + 1);
  writeFileSync(join(app, "in.bin"), data);
  expect(await client.save(artifact(cfg, "img/in.bin"), join(app, "in.bin"))).toEqual({ success: true, error: "" });
  expect(await client.load(artifact(cfg, "img/in.bin"), join(app, "out.bin"))).toEqual({ success: true, error: "" });
  expect(readFileSync(join(app, "out.bin")).equals(data)).toBe(true);
  client.close();
  proc.kill("SIGTERM");
  expect(await within(exited, 30_000, "the image's plugin exit after SIGTERM")).toBe(0);
}, 120_000);
