// The `argo-s3-artifact` command line client, run as a user would run it
// (`node dist/bin/cli.js ...`) against the real plugin and a real MinIO:
// outputs, bytes, exit codes, and a quiet stderr when it is not a terminal.
import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { Progress, formatBytes, formatDuration } from "../../src/cli/progress.js";
import { type PluginProcess, ROOT, startPlugin } from "../support/plugin.js";
import { treeSha } from "../support/tree.js";

const CLI = join(ROOT, "dist", "bin", "cli.js");

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the CLI with pipes (not a terminal) and a clean environment. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      {
        encoding: "buffer",
        maxBuffer: 256 * 1024 * 1024,
        timeout: 60_000,
        env: { PATH: process.env["PATH"] ?? "", ...env },
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ code: child.exitCode ?? code, stdout, stderr: stderr.toString() });
      },
    );
  });
}

let minio: MinioServer;
let plugin: PluginProcess;
let work: string;
let configFile: string;
let config: string;
/** Common options: the plugin's socket and the configuration file. */
let common: string[];
const data = randomBytes(7 * 1024 * 1024 + 5); // several 2 MiB SaveStream chunks and OpenStream frames

beforeAll(async () => {
  minio = await startMinio();
  plugin = await startPlugin({
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: minio.secretKey,
    AWS_EC2_METADATA_DISABLED: "true",
  });
  work = mkdtempSync(join(tmpdir(), "cli-"));
  config = `endpoint: ${minio.endpoint}\nbucket: cli-bucket\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\ntuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 5\n`;
  configFile = join(work, "config.yaml");
  writeFileSync(configFile, config);
  common = ["--socket", plugin.socket, "--config", configFile];
  writeFileSync(join(work, "data.bin"), data);
  mkdirSync(join(work, "tree", "sub"), { recursive: true });
  writeFileSync(join(work, "tree", "a.txt"), "alpha\n");
  writeFileSync(join(work, "tree", "sub", "b.bin"), randomBytes(300_000));
  writeFileSync(join(work, "tree", "empty"), "");
  symlinkSync("/etc/hostname", join(work, "tree", "link"));
});

afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
  expect(plugin.output()).not.toContain(minio.secretKey);
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("argo-s3-artifact against a running plugin", () => {
  it("caps prints the capabilities", async () => {
    const r = await cli(["caps", "--socket", plugin.socket]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout.toString()).toBe("supports_save_stream: true\n");
  });

  it("save a file (SaveStream), a file with --no-stream (Save) and a directory; quiet on a pipe", async () => {
    for (const args of [
      ["save", join(work, "data.bin"), "--key", "cli/data.bin"],
      ["save", join(work, "data.bin"), "--key", "cli/data-save.bin", "--no-stream"],
      ["save", join(work, "tree"), "--key", "cli/tree"],
    ]) {
      const r = await cli([...args, ...common]);
      expect(r, args.join(" ")).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout.length).toBe(0);
    }
  });

  it("a relative path is resolved against the CLI's directory, not the plugin's", async () => {
    const r = await new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [CLI, "save", "tree/a.txt", "--key", "cli/relative.txt", ...common],
        { cwd: work, timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout: Buffer.from(stdout), stderr }),
      );
    });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect((await cli(["cat", "cli/relative.txt", ...common])).stdout.toString()).toBe("alpha\n");
  });

  it("ls lists every object under the prefix, one per line (symlinks were skipped)", async () => {
    const r = await cli(["ls", "cli/tree", ...common]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout.toString().split("\n").filter(Boolean).sort()).toEqual([
      "cli/tree/a.txt",
      "cli/tree/empty",
      "cli/tree/sub/b.bin",
    ]);
  });

  it("ls escapes control characters in keys: a key cannot drive the terminal (erase the line, set the title, write the clipboard)", async () => {
    const { S3Client, PutObjectCommand } = await import("@aws-sdk/client-s3");
    const s3 = new S3Client({
      endpoint: minio.url,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    });
    const evil = "cli/esc/\u001b[2K\u001b]0;pwned\u0007\u001b]52;c;ZWNobyBoaQ==\u0007name\r.txt";
    await s3.send(new PutObjectCommand({ Bucket: "cli-bucket", Key: evil, Body: "x" }));
    const r = await cli(["ls", "cli/esc", ...common]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const out = r.stdout.toString();
    expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    // (MinIO's XML listing turns ESC into U+FFFD; BEL and CR arrive as themselves.)
    expect(out).toContain("pwned\\u0007");
    expect(out).toContain("name\\u000d.txt");
  });

  it("is-dir prints true for a prefix and false for an object", async () => {
    expect((await cli(["is-dir", "cli/tree", ...common])).stdout.toString()).toBe("true\n");
    const r = await cli(["is-dir", "cli/data.bin", ...common]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout.toString()).toBe("false\n");
  });

  it("cat writes the object's exact bytes to stdout (both save paths)", async () => {
    for (const key of ["cli/data.bin", "cli/data-save.bin"]) {
      const r = await cli(["cat", key, ...common]);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout.length).toBe(data.length);
      expect(r.stdout.equals(data)).toBe(true);
    }
  });

  it("cat of an object larger than the plugin's read-ahead window is byte-exact", async () => {
    // Range buffers are recycled once the next range is pulled: frames still
    // queued in the gRPC call must never see a recycled buffer.
    const big = randomBytes(48 * 1024 * 1024 + 7);
    writeFileSync(join(work, "big.bin"), big);
    expect(await cli(["save", join(work, "big.bin"), "--key", "cli/big.bin", ...common])).toMatchObject({
      code: 0,
      stderr: "",
    });
    for (let i = 0; i < 2; i++) {
      const r = await cli(["cat", "cli/big.bin", ...common]);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout.length).toBe(big.length);
      expect(createHash("sha256").update(r.stdout).digest("hex")).toBe(createHash("sha256").update(big).digest("hex"));
    }
  });

  it("cat into a reader that stops early (| head) ends quietly with 0", () => {
    const sh = `node ${JSON.stringify(CLI)} cat cli/data.bin --socket ${JSON.stringify(plugin.socket)} --config ${JSON.stringify(configFile)} | head -c 1000 | wc -c; echo "rc=\${PIPESTATUS[0]}"`;
    const r = spawnSync("bash", ["-c", sh], { encoding: "utf8", timeout: 60_000 });
    expect(r.stdout.trim().split(/\s+/)).toEqual(["1000", "rc=0"]);
    expect(r.stderr).toBe("");
  });

  it("load writes a file and a directory tree", async () => {
    const file = join(work, "loaded.bin");
    expect(await cli(["load", "cli/data.bin", file, ...common])).toMatchObject({ code: 0, stderr: "" });
    expect(readFileSync(file).equals(data)).toBe(true);
    const dir = join(work, "loaded-tree");
    expect(await cli(["load", "cli/tree", dir, ...common])).toMatchObject({ code: 0, stderr: "" });
    const expected = treeSha(join(work, "tree"));
    expect(treeSha(dir)).toEqual(expected);
  });

  it("--config-yaml and ARGO_S3_PLUGIN_SOCKET work in place of --config and --socket", async () => {
    const r = await cli(["is-dir", "cli/tree", "--config-yaml", config], { ARGO_S3_PLUGIN_SOCKET: plugin.socket });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout.toString()).toBe("true\n");
  });

  it("rm deletes an object, and a prefix when the key ends in /", async () => {
    expect(await cli(["rm", "cli/data-save.bin", ...common])).toMatchObject({ code: 0, stderr: "" });
    expect(await cli(["rm", "cli/tree/", ...common])).toMatchObject({ code: 0, stderr: "" });
    expect((await cli(["is-dir", "cli/tree", ...common])).stdout.toString()).toBe("false\n");
  });

  it("not found: exit 1 and one readable line naming command and key", async () => {
    for (const args of [
      ["load", "cli/data-save.bin", join(work, "never")],
      ["cat", "cli/data-save.bin"],
      ["ls", "cli/tree"],
    ]) {
      const r = await cli([...args, ...common]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stdout.length).toBe(0);
      const lines = r.stderr.split("\n").filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^argo-s3-artifact: ${args[0]} ${args[1]}: .*not found`));
      expect(lines[0]).toContain("s3://cli-bucket/");
    }
  });

  it("an invalid configuration or a missing local file: exit 1 with the plugin's reason", async () => {
    const bad = await cli(["ls", "x", "--socket", plugin.socket, "--config-yaml", "bucket: b\nbogus: 1\n"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^argo-s3-artifact: ls x: invalid plugin configuration: bogus: unknown field/);
    const missing = await cli(["save", join(work, "nope"), "--key", "k", ...common]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("nope");
  });

  it.each([
    [[], "usage: argo-s3-artifact"],
    [["frob"], 'unknown command "frob"'],
    [["save", "x"], "needs --key KEY"],
    [["load", "only-key"], "takes <key> <path>"],
    [["ls", "k", "--bogus"], "--bogus"],
    [["ls", "k"], "needs the plugin configuration"],
    [["ls", "k", "--config", "/nonexistent/config.yaml"], "/nonexistent/config.yaml"],
    [["ls", "k", "--config-yaml", "bucket: b", "--config", "/x"], "not both"],
    [["caps", "--timeout", "soon"], "--timeout"],
  ])("bad usage %j: exit 2", async (args, message) => {
    const r = await cli([...args, "--socket", plugin.socket]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it("--help prints the usage on stdout and exits 0", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toContain("exit codes: 0 ok, 1 the operation failed");
  });

  it("cannot reach the plugin: exit 3 (missing socket, not a socket)", async () => {
    const notSocket = join(work, "not-a-socket");
    writeFileSync(notSocket, "");
    for (const socket of [join(work, "no", "socket"), notSocket]) {
      const r = await cli(["ls", "k", "--socket", socket, "--config", configFile]);
      expect(r.code).toBe(3);
      expect(r.stderr).toBe(
        `argo-s3-artifact: ls k: cannot reach the plugin at ${socket}: ${socket === notSocket ? "not a unix socket" : "no such socket"}; is it running? (--socket or ARGO_S3_PLUGIN_SOCKET)\n`,
      );
    }
  });

  const hasScript = spawnSync("script", ["--version"]).status === 0;
  if (!hasScript)
    process.stdout.write(
      "cli: the terminal summary test is skipped: `script` (util-linux) is not installed, and it gives the CLI a pseudo-terminal\n",
    );
  it.skipIf(!hasScript)("on a terminal, save and load end with a summary line on stderr", () => {
    // `script` gives the CLI a pseudo-terminal, so stderr.isTTY is true.
    const base = `node ${JSON.stringify(CLI)} --socket ${JSON.stringify(plugin.socket)} --config ${JSON.stringify(configFile)}`;
    const cmd = `${base} save ${JSON.stringify(join(work, "data.bin"))} --key cli/tty.bin && ${base} load cli/tty.bin ${JSON.stringify(join(work, "tty.bin"))}`;
    const r = spawnSync("script", ["-qec", cmd, "/dev/null"], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/saved cli\/tty\.bin: 7\.0 MiB in \d+\.\d s/);
    expect(r.stdout).toMatch(/loaded cli\/tty\.bin to .*tty\.bin: 7\.0 MiB in \d+\.\d s/);
    expect(readFileSync(join(work, "tty.bin")).equals(data)).toBe(true);
  });
});

describe("progress line", () => {
  function fake() {
    let t = 0;
    const writes: string[] = [];
    const stream = { isTTY: true, columns: 100, write: (s: string) => (writes.push(s), true) };
    return { stream, writes, now: () => t, advance: (ms: number) => (t += ms) };
  }

  it("known total: bytes, percent, rate and ETA", () => {
    const f = fake();
    const p = new Progress("save k", { total: 100 * 1024 * 1024, stream: f.stream, now: f.now, tickMs: 60_000 });
    f.advance(1000);
    p.set(10 * 1024 * 1024);
    f.advance(1000);
    p.set(20 * 1024 * 1024);
    expect(p.line()).toBe("save k  20.0 MiB / 100 MiB  20%  10.0 MiB/s  ETA 0:08  0:02 elapsed");
    p.finish(p.summary("saved k"));
    expect(f.writes).toEqual(["saved k: 20.0 MiB in 2.0 s, 10.0 MiB/s\n"]);
  });

  it("unknown total: bytes, rate and elapsed time", () => {
    const f = fake();
    const p = new Progress("load k", { stream: f.stream, now: f.now, tickMs: 60_000 });
    expect(p.line()).toBe("load k  0:00 elapsed");
    f.advance(2000);
    p.set(3 * 1024 * 1024);
    expect(p.line()).toBe("load k  3.0 MiB  1.5 MiB/s  0:02 elapsed");
    p.finish();
  });

  it("draws nothing when the stream is not a terminal", async () => {
    const writes: string[] = [];
    const p = new Progress("save k", {
      total: 10,
      stream: { isTTY: false, write: (s) => (writes.push(s), true) },
      tickMs: 5,
    });
    p.set(5);
    await new Promise((r) => setTimeout(r, 30));
    p.finish(p.summary("saved k"));
    expect(writes).toEqual([]);
  });

  it("formats sizes and durations", () => {
    expect([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(5 * 1024 ** 3)]).toEqual([
      "0 B",
      "1023 B",
      "1.5 KiB",
      "5.0 GiB",
    ]);
    expect([formatDuration(0), formatDuration(61_000), formatDuration(3_723_000), formatDuration(1234, true)]).toEqual([
      "0:00",
      "1:01",
      "1:02:03",
      "1.2 s",
    ]);
  });
});
