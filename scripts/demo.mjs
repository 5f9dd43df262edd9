// @ts-check
// `npm run demo`: a save/load round trip you can watch. Starts a MinIO (built
// from the pinned source on first use), the plugin on a unix socket, and then
// drives the plugin over gRPC exactly as Argo would: Save a file and a
// directory, list them, Load them back, stream one, and compare every byte.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactClient, artifact } from "../dist/plugin-client/artifact-service-client.js";
import { startMinio } from "./lib/minio.mjs";
import { ToolError } from "./lib/tools.mjs";
import { ROOT } from "./lib/tools.mjs";

const step = (/** @type {string} */ s) => process.stdout.write(`\n▶ ${s}\n`);
const sha = (/** @type {Buffer} */ b) => createHash("sha256").update(b).digest("hex").slice(0, 16);

const work = mkdtempSync(join(tmpdir(), "argo-s3-demo-"));
step("starting MinIO on a free loopback port (temp data dir)");
const minio = await startMinio().catch((/** @type {unknown} */ e) => {
  if (e instanceof ToolError) {
    process.stderr.write(`demo: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
});
console.log(`  MinIO at ${minio.url}`);

step("starting the plugin: node dist/main.cjs <socket>");
const socket = join(work, "artifact-plugins", "s3", "socket");
const plugin = spawn(process.execPath, [join(ROOT, "dist", "main.cjs"), socket], {
  env: {
    ...process.env,
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: minio.secretKey,
    AWS_EC2_METADATA_DISABLED: "true",
    LOG_LEVEL: "info",
  },
  stdio: ["ignore", "pipe", "inherit"],
});
await new Promise((resolve, reject) => {
  let out = "";
  plugin.stdout?.on("data", (c) => {
    out += c;
    process.stdout.write(`  plugin log: ${c}`);
    if (out.includes('"msg":"ready"')) resolve(undefined);
  });
  plugin.once("exit", (code) => reject(new Error(`plugin exited early with ${code}`)));
});

const configuration = [
  `endpoint: ${minio.endpoint}`,
  "bucket: demo",
  "insecure: true",
  "createBucketIfNotPresent: {}",
].join("\n");
console.log(`  plugin.configuration:\n${configuration.replace(/^/gm, "    ")}`);
const client = new ArtifactClient(socket);
let failed = false;
const check = (/** @type {boolean} */ ok, /** @type {string} */ what) => {
  console.log(`  ${ok ? "✔" : "✘"} ${what}`);
  if (!ok) failed = true;
};

try {
  step("Save a 24 MiB file (multipart) to key demo/model.bin");
  const file = join(work, "model.bin");
  const data = randomBytes(24 * 1024 * 1024);
  writeFileSync(file, data);
  const saved = await client.save(artifact(configuration, "demo/model.bin"), file);
  check(saved.success, `Save → ${JSON.stringify(saved)}`);

  step("Save a directory to key demo/results");
  const dir = join(work, "results");
  mkdirSync(join(dir, "plots"), { recursive: true });
  writeFileSync(join(dir, "metrics.json"), JSON.stringify({ accuracy: 0.93 }));
  writeFileSync(join(dir, "plots", "loss.csv"), "epoch,loss\n1,0.5\n2,0.3\n");
  check((await client.save(artifact(configuration, "demo/results"), dir)).success, "Save directory");

  step("ListObjects / IsDirectory");
  const listed = await client.listObjects(artifact(configuration, "demo/results"));
  console.log(`  objects: ${JSON.stringify(listed.objects)}`);
  check(listed.objects.length === 2, "two objects listed under demo/results/");
  check((await client.isDirectory(artifact(configuration, "demo/results"))).isDirectory, "demo/results is a directory");

  step("Load both back (as Argo does, into <path>.tmp) and compare");
  const back = join(work, "loaded", "model.bin.tmp");
  check((await client.load(artifact(configuration, "demo/model.bin"), back)).success, "Load file");
  const got = readFileSync(back);
  check(got.equals(data), `file bytes equal (sha256 ${sha(data)} → ${sha(got)})`);
  const dirBack = join(work, "loaded", "results.tmp");
  check((await client.load(artifact(configuration, "demo/results"), dirBack)).success, "Load directory");
  check(
    readFileSync(join(dirBack, "plots", "loss.csv"), "utf8") === readFileSync(join(dir, "plots", "loss.csv"), "utf8"),
    "directory contents equal",
  );

  step("OpenStream the file (what the Argo UI download uses)");
  const streamed = await client.openStream(artifact(configuration, "demo/model.bin"));
  check(streamed.data.equals(data), `${streamed.frames.length} frames, bytes equal`);

  step("Load a key that does not exist");
  const missing = await client.load(artifact(configuration, "demo/nope"), join(work, "nope"));
  console.log(`  error: ${missing.error}`);
  check(!missing.success, "not-found reported");
} finally {
  client.close();
  plugin.kill("SIGTERM");
  const code = await new Promise((r) => plugin.once("exit", r));
  console.log(`\n  plugin exited with ${code} after SIGTERM`);
  await minio.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(failed ? "\ndemo FAILED" : "\ndemo passed: every byte came back");
process.exit(failed ? 1 : 0);
