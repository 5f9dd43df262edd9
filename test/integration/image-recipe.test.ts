// No Docker engine runs here, so this test replays the Dockerfile's recipe by
// hand: a production-only install from the lockfile into a clean directory,
// the final stage's COPY lines as the Dockerfile writes them (the bundle, its
// vendored protos, the native CRC32 package, proto/, package.json) and its
// RUN that bakes the compile cache, then a Save/Load round trip through the
// plugin started from there by the image's ENTRYPOINT (the launcher, then
// Node) as the image's user.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { imageEnv, imageUser } from "../../scripts/lib/image-env.mjs";
import { entrypointAt, finalStageCopies, finalStageRuns, stageImageApp } from "../../scripts/lib/image-app.mjs";
import { nodeBinary, toolVersions } from "../../scripts/lib/tools.mjs";
import { rootKeysEnv } from "../support/minio-access.js";
import { ArtifactClient, ROOT, artifact } from "../support/plugin.js";
import { spawn } from "node:child_process";
import { within } from "../support/bounded.js";

const run = promisify(execFile);
/** The Dockerfile's USER (numeric uid:gid). */
const [UID, GID] = imageUser().split(":") as [string, string];
let minio: MinioServer;
let app: string;
/** The image's Node (NODE_IMAGE_VERSION): the compile cache is per Node version. */
let imageNode: string;
let imagePath: string;

beforeAll(async () => {
  minio = await startMinio();
  app = mkdtempSync(join(tmpdir(), "image-"));
  chmodSync(app, 0o755);
  // The image's Node where the image's user can run it (the tools cache may sit in a home only root can enter).
  const cached = await nodeBinary(toolVersions()["NODE_IMAGE_VERSION"] ?? "");
  mkdirSync(join(app, ".node"), { mode: 0o755 });
  imageNode = join(app, ".node", "node");
  copyFileSync(cached, imageNode);
  chmodSync(imageNode, 0o755);
  imagePath = `${dirname(imageNode)}:${process.env["PATH"] ?? ""}`;
  // The deps stage: a production-only install from the lockfile.
  const deps = join(app, ".deps");
  mkdirSync(deps);
  cpSync(join(ROOT, "package.json"), join(deps, "package.json"));
  cpSync(join(ROOT, "package-lock.json"), join(deps, "package-lock.json"));
  await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
    cwd: deps,
    maxBuffer: 16 * 1024 * 1024,
  });
  // The final stage: its COPY and RUN lines as written (scripts/lib/image-app.mjs).
  await stageImageApp(app, imageNode, deps);
  rmSync(deps, { recursive: true, force: true });
}, 300_000);

afterAll(async () => {
  await minio?.stop();
  rmSync(app, { recursive: true, force: true });
});

it("the final stage copies the bundle and what it reads, no node_modules but the native CRC32 package", () => {
  expect(
    finalStageCopies()
      .map((c) => c.src)
      .sort(),
  ).toEqual(
    [
      "/launch",
      "/app/node_modules/@node-rs",
      "/src/dist/main.cjs",
      "/src/dist/main.cjs.LEGAL.txt",
      "/src/dist/cli.cjs",
      "/src/dist/cli.cjs.LEGAL.txt",
      "/src/dist/vendor",
      "/src/dist/probe.js",
      "package.json",
      "proto",
    ].sort(),
  );
  expect(readdirSync(join(app, "node_modules"))).toEqual(["@node-rs"]);
  expect(statSync(join(app, "launch")).mode & 0o111, "the launcher is executable").toBe(0o111);
  expect(readdirSync(join(app, "dist")).sort()).toEqual([
    "cli.cjs",
    "cli.cjs.LEGAL.txt",
    "main.cjs",
    "main.cjs.LEGAL.txt",
    "probe.js",
    "vendor",
  ]);
});

it("the final stage sets production mode, glibc's fixed mmap threshold and a compile cache baked at build, readable by the image's user", () => {
  expect(imageEnv()).toEqual({
    NODE_ENV: "production",
    MALLOC_MMAP_THRESHOLD_: "131072",
    NODE_COMPILE_CACHE: "/app/.compile-cache",
  });
  // What scripts/lib/cluster.mjs's plugin image does in two halves (that image has no shell).
  expect(finalStageRuns()).toEqual(["node dist/main.cjs --version && chmod -R a+rX .compile-cache", "chmod 1777 /tmp"]);
  const cached = readdirSync(join(app, ".compile-cache"), { recursive: true, withFileTypes: true }).filter((e) =>
    e.isFile(),
  );
  expect(cached.length, "the RUN line baked a compile cache").toBeGreaterThan(0);
  for (const e of cached)
    expect(statSync(join(e.parentPath, e.name)).mode & 0o004, `${e.name} is world-readable`).toBe(0o004);
});

it("the bundle finds the native CRC32 among the image's files", async () => {
  const { stdout } = await run(imageNode, [
    "-e",
    `console.log(require("node:module").createRequire(${JSON.stringify(join(app, "dist", "main.cjs"))})("@node-rs/crc32").crc32(Buffer.from("123456789")))`,
  ]);
  expect(Number(stdout)).toBe(0xcbf43926);
});

it("runs from the image's files alone by its ENTRYPOINT, as its user on its Node: socket bound by the launcher, Save/Load round trip, SIGTERM → exit 0", async () => {
  const socket = join(app, "tmp", "artifact-plugins", "s3", "socket");
  mkdirSync(join(app, "tmp"));
  chmodSync(join(app, "tmp"), 0o1777);
  mkdirSync(dirname(socket), { recursive: true });
  chmodSync(join(app, "tmp", "artifact-plugins"), 0o777);
  chmodSync(dirname(socket), 0o777); // Argo's emptyDir
  const proc = spawn(
    "setpriv",
    [`--reuid=${UID}`, `--regid=${GID}`, "--clear-groups", "--", ...entrypointAt(app, imageNode), socket],
    {
      cwd: app,
      env: { PATH: imagePath, ...imageEnv(app), ...rootKeysEnv(minio) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", r));
  for (let i = 0; i < 100 && !out.includes('"msg":"ready"'); i++) await new Promise((r) => setTimeout(r, 100));
  expect(out).toContain('"msg":"ready"');
  expect(out, "Node serves the socket the launcher bound").toContain('"socketFrom":"launcher"');
  expect(statSync(socket).uid).toBe(Number(UID));
  expect(statSync(socket).mode & 0o777).toBe(0o666);
  const client = new ArtifactClient(socket);
  const cfg = `endpoint: ${minio.endpoint}\nbucket: image\ninsecure: true\ncreateBucketIfNotPresent: {}\n`;
  const cfgFile = join(app, "tmp", "s3.yaml");
  writeFileSync(cfgFile, cfg);
  const data = randomBytes(3 * 1024 * 1024 + 1);
  writeFileSync(join(app, "tmp", "in.bin"), data);
  expect(await client.save(artifact(cfg, "img/in.bin"), join(app, "tmp", "in.bin"))).toEqual({
    success: true,
    error: "",
  });
  expect(await client.load(artifact(cfg, "img/in.bin"), join(app, "tmp", "out.bin"))).toEqual({
    success: true,
    error: "",
  });
  expect(readFileSync(join(app, "tmp", "out.bin")).equals(data)).toBe(true);
  // Nothing came from outside the image's files: the native CRC32 from its one package, the protos from dist/vendor.
  expect(out).not.toContain("reflection unavailable");
  // The command line client the README points `kubectl exec` at, from the image's files, as the image's user.
  const cli = await run(
    "setpriv",
    [
      `--reuid=${UID}`,
      `--regid=${GID}`,
      "--clear-groups",
      "--",
      imageNode,
      join(app, "dist", "cli.cjs"),
      "ls",
      "img/",
      "--config",
      cfgFile,
    ],
    {
      cwd: app,
      env: { PATH: imagePath, ARGO_S3_PLUGIN_SOCKET: socket },
    },
  );
  expect(cli.stdout).toContain("img/in.bin");
  client.close();
  proc.kill("SIGTERM");
  expect(await within(exited, 30_000, "the image's plugin exit after SIGTERM")).toBe(0);
}, 120_000);
