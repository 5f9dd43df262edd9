#!/usr/bin/env node
// `argo-s3-artifact`: drive a running plugin over its unix socket with the same
// RPCs Argo sends, to try a configuration, debug a pod (kubectl exec into the
// plugin container) or move an artifact by hand.
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { lstat, readFile, stat } from "node:fs/promises";
import { createConnection } from "node:net";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { status } from "@grpc/grpc-js";
import { type Artifact, ArtifactClient } from "../plugin-client/artifact-service-client.js";
import { loadedBytes, treeSize } from "../cli/disk.js";
import { Progress } from "../cli/progress.js";
import { VERSION } from "../version.js";
import { printable } from "../config/parse.js";

const PROG = "argo-s3-artifact";
const DEFAULT_SOCKET = "/tmp/artifact-plugins/s3/socket";

const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

const USAGE = `usage: ${PROG} <command> [arguments] [options]

Talks to a running argo-s3-artifact-plugin over its unix socket, sending the
same RPCs as Argo Workflows.

commands:
  save <path> --key KEY   upload a file or directory (SaveStream for a file when
                          the plugin supports it, else Save)
  load <key> <path>       download an object or a whole prefix to <path> (Load)
  ls <key>                list the objects under <key>/ (ListObjects)
  is-dir <key>            print true or false (IsDirectory)
  cat <key>               write the object to stdout (OpenStream)
  rm <key>                delete the object; a key ending in / deletes the prefix (Delete)
  caps                    print the plugin's capabilities (GetCapabilities)
  health                  exit 0 when the plugin answers SERVING (grpc.health.v1
                          Check), 1 otherwise: the sidecar's liveness and
                          readiness probe (use with --timeout)

options:
  --socket PATH         plugin socket (default: $ARGO_S3_PLUGIN_SOCKET, else
                        ${DEFAULT_SOCKET})
  --config FILE         file holding the plugin configuration (the YAML of
                        plugin.configuration: bucket, endpoint, ...)
  --config-yaml STRING  the configuration itself
  --key KEY             object key (save)
  --no-stream           save a file with Save instead of SaveStream
  --timeout SECONDS     deadline of one unary RPC (default 3600)
  -h, --help            show this help
  --version             print the version

Save and Load pass <path> to the plugin, which reads or writes it itself: it
must be a path the plugin process can reach (same machine or pod volume).
Progress goes to stderr when it is a terminal; otherwise stderr carries only
errors.

exit codes: 0 ok, 1 the operation failed (e.g. not found), 2 usage error,
3 cannot reach the plugin socket
`;

/** An error that ends the run with a given exit code and one line on stderr. */
class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

const usage = (message: string) => new CliError(EXIT.usage, `${message} (see ${PROG} --help)`);
const failed = (message: string) => new CliError(EXIT.failed, message);

interface Command {
  args: string[];
  needsConfig: boolean;
  run(ctx: Context, positionals: string[]): Promise<void>;
}

interface Context {
  client: ArtifactClient;
  artifact(key: string): Artifact;
  key: string | undefined;
  noStream: boolean;
  /** Where the operation's errors are attributed: "load runs/x". */
  label: string;
}

const COMMANDS: Record<string, Command> = {
  save: { args: ["path"], needsConfig: true, run: save },
  load: { args: ["key", "path"], needsConfig: true, run: load },
  ls: { args: ["key"], needsConfig: true, run: ls },
  "is-dir": { args: ["key"], needsConfig: true, run: isDir },
  cat: { args: ["key"], needsConfig: true, run: cat },
  rm: { args: ["key"], needsConfig: true, run: rm },
  caps: { args: [], needsConfig: false, run: caps },
  health: { args: [], needsConfig: false, run: health },
};

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        socket: { type: "string" },
        config: { type: "string" },
        "config-yaml": { type: "string" },
        key: { type: "string" },
        "no-stream": { type: "boolean" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
      },
    });
  } catch (e) {
    return report(usage((e as Error).message));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (values.version) {
    process.stdout.write(`argo-s3-artifact ${VERSION}\n`);
    return EXIT.ok;
  }
  if (positionals.length === 0) {
    process.stderr.write(USAGE);
    return EXIT.usage;
  }
  const [name, ...rest] = positionals as [string, ...string[]];
  const cmd = COMMANDS[name];
  let label = name;
  let client: ArtifactClient | undefined;
  try {
    if (!cmd) throw usage(`unknown command "${name}"`);
    if (rest.length !== cmd.args.length) {
      const want = cmd.args.length === 0 ? "no arguments" : cmd.args.map((a) => `<${a}>`).join(" ");
      throw usage(`takes ${want}, got ${rest.length} argument${rest.length === 1 ? "" : "s"}`);
    }
    for (const [i, a] of cmd.args.entries()) if (rest[i] === "") throw usage(`<${a}> is empty`);
    if (values.key !== undefined && name !== "save")
      throw usage("--key is for save; this command takes the key as an argument");
    if (name === "save" && !values.key) throw usage("needs --key KEY");
    if (values["no-stream"] && name !== "save") throw usage("--no-stream is for save only");
    const timeoutMs = parseTimeout(values.timeout);
    const configuration = cmd.needsConfig ? await readConfig(values.config, values["config-yaml"]) : "";
    const subject = name === "save" ? values.key! : rest[0];
    label = subject !== undefined ? `${name} ${subject}` : name;

    const socket = values.socket ?? (process.env["ARGO_S3_PLUGIN_SOCKET"] || DEFAULT_SOCKET);
    await probeSocket(socket);
    client = new ArtifactClient(socket, timeoutMs);
    const ctx: Context = {
      client,
      // The plugin ignores plugin.name and the artifact name; they only label its errors and logs.
      artifact: (key) => ({ name: "cli", plugin: { name: "s3", configuration, key } }),
      key: values.key,
      noStream: values["no-stream"] === true,
      label,
    };
    await cmd.run(ctx, rest);
    return EXIT.ok;
  } catch (e) {
    return report(asCliError(e), label);
  } finally {
    client?.close();
  }
}

function report(e: CliError, label?: string): number {
  const where = label ? `${label}: ` : "";
  // One line, always: multi-line plugin errors would be hard to grep in a log.
  process.stderr.write(`${PROG}: ${printable(`${where}${e.message.replace(/\s*\n\s*/g, " ")}`, Infinity)}\n`);
  return e.exitCode;
}

function asCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  const err = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof err.code === "number") {
    // A gRPC status: the plugin went away (or never answered) vs. it refused the call.
    const text = typeof err.details === "string" && err.details ? err.details : String(err.message);
    if (err.code === status.UNAVAILABLE) return new CliError(EXIT.unreachable, `cannot reach the plugin: ${text}`);
    if (err.code === status.DEADLINE_EXCEEDED) return failed(`timed out (--timeout): ${text}`);
    return failed(`${status[err.code] ?? err.code}: ${text}`);
  }
  return failed(e instanceof Error ? e.message : String(e));
}

function parseTimeout(v: string | undefined): number {
  if (v === undefined) return 3_600_000;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw usage(`--timeout: "${v}" is not a positive number of seconds`);
  return n * 1000;
}

async function readConfig(file: string | undefined, yaml: string | undefined): Promise<string> {
  if (file !== undefined && yaml !== undefined) throw usage("give --config or --config-yaml, not both");
  let text: string;
  if (file !== undefined) {
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw usage(`--config ${file}: ${(e as Error).message}`);
    }
  } else if (yaml !== undefined) {
    text = yaml;
  } else {
    throw usage("needs the plugin configuration: --config FILE or --config-yaml STRING");
  }
  if (text.trim() === "") throw usage("the plugin configuration is empty (it needs at least bucket)");
  return text;
}

/** Connect once before any RPC, so "no plugin there" is told apart from "the operation failed". */
async function probeSocket(socket: string): Promise<void> {
  const conn = createConnection(socket);
  const timer = setTimeout(() => conn.destroy(new Error("no answer within 5 s")), 5000);
  try {
    await once(conn, "connect");
  } catch (e) {
    const code = (e as { code?: string }).code;
    const isSocket = await lstat(socket).then(
      (st) => st.isSocket(),
      () => false,
    );
    const why =
      code === "ENOENT"
        ? "no such socket"
        : code === "ECONNREFUSED" && !isSocket
          ? "not a unix socket"
          : code === "ECONNREFUSED"
            ? "nothing is listening (stale socket)"
            : (e as Error).message;
    throw new CliError(
      EXIT.unreachable,
      `cannot reach the plugin at ${socket}: ${why}; is it running? (--socket or ARGO_S3_PLUGIN_SOCKET)`,
    );
  } finally {
    clearTimeout(timer);
    conn.destroy();
  }
}

function check(reply: { success: boolean; error: string }): void {
  if (!reply.success) throw failed(reply.error || "failed (the plugin gave no reason)");
}

async function save(ctx: Context, [path]: string[]): Promise<void> {
  const abs = resolve(path!);
  const key = ctx.key!;
  let st;
  try {
    st = await stat(abs);
  } catch (e) {
    throw failed((e as Error).message);
  }
  const a = ctx.artifact(key);
  if (st.isFile() && !ctx.noStream && (await supportsSaveStream(ctx.client))) {
    // Streaming from here measures real progress; Save would leave us blind until the end.
    const progress = new Progress(`save ${key}`, { total: st.size });
    async function* chunks(): AsyncGenerator<Buffer> {
      // 2 MiB chunks, as Argo sends them.
      for await (const c of createReadStream(abs, { highWaterMark: 2 * 1024 * 1024 })) {
        yield c as Buffer;
        progress.add((c as Buffer).length);
      }
    }
    try {
      check(await ctx.client.saveStream(a, chunks()));
    } finally {
      progress.finish();
    }
    progress.finish(progress.summary(`saved ${key}`, st.size));
    return;
  }
  const tree = st.isDirectory() ? await treeSize(abs) : { files: 1, bytes: st.size };
  const progress = new Progress(`save ${key}`, {
    total: tree.bytes,
    note: st.isDirectory() ? `${tree.files} files` : "",
  });
  try {
    check(await ctx.client.save(a, abs));
  } finally {
    progress.finish();
  }
  progress.finish(progress.summary(`saved ${key}`, tree.bytes));
}

async function supportsSaveStream(client: ArtifactClient): Promise<boolean> {
  try {
    return (await client.getCapabilities()).supportsSaveStream;
  } catch (e) {
    // Argo falls back to Save when the plugin does not implement GetCapabilities.
    if ((e as { code?: number }).code === status.UNIMPLEMENTED) return false;
    throw e;
  }
}

async function load(ctx: Context, [key, path]: string[]): Promise<void> {
  const abs = resolve(path!);
  const progress = new Progress(`load ${key}`);
  // Load is one unary call and the plugin writes the files: watch them land.
  let polling = false;
  const poll = setInterval(() => {
    if (polling) return;
    polling = true;
    loadedBytes(abs)
      .then((n) => progress.set(n))
      .catch(() => undefined)
      .finally(() => (polling = false));
  }, 500);
  poll.unref();
  try {
    check(await ctx.client.load(ctx.artifact(key!), abs));
  } finally {
    clearInterval(poll);
    progress.finish();
  }
  const st = await stat(abs).catch(() => undefined);
  const bytes = st?.isDirectory() ? (await treeSize(abs)).bytes : (st?.size ?? 0);
  progress.finish(progress.summary(`loaded ${key} to ${abs}`, bytes));
}

async function ls(ctx: Context, [key]: string[]): Promise<void> {
  const res = await ctx.client.listObjects(ctx.artifact(key!));
  if (res.error) throw failed(res.error);
  // Keys are anybody's bytes: control characters are shown escaped, never sent to the terminal.
  if (res.objects.length > 0) process.stdout.write(`${res.objects.map((k) => printable(k, Infinity)).join("\n")}\n`);
}

async function isDir(ctx: Context, [key]: string[]): Promise<void> {
  const res = await ctx.client.isDirectory(ctx.artifact(key!));
  if (res.error) throw failed(res.error);
  process.stdout.write(`${res.isDirectory}\n`);
}

async function rm(ctx: Context, [key]: string[]): Promise<void> {
  check(await ctx.client.delete(ctx.artifact(key!)));
}

async function caps(ctx: Context): Promise<void> {
  const res = await ctx.client.getCapabilities();
  process.stdout.write(`supports_save_stream: ${res.supportsSaveStream}\n`);
}

async function health(ctx: Context): Promise<void> {
  const res = await ctx.client.health();
  if (res.status !== "SERVING") throw failed(`the plugin answers ${res.status}`);
  process.stdout.write(`${res.status}\n`);
}

async function cat(ctx: Context, [key]: string[]): Promise<void> {
  const out = process.stdout;
  // Progress only when it cannot mix with the data on the same terminal.
  const progress = new Progress(`cat ${key}`, { enabled: process.stderr.isTTY === true && out.isTTY !== true });
  let closed = false;
  let outError: Error | undefined;
  const onError = (e: NodeJS.ErrnoException) => {
    // The reader went away (`| head`): stop quietly, as cat does.
    if (e.code === "EPIPE") closed = true;
    else outError = e;
  };
  out.on("error", onError);
  try {
    for await (const frame of ctx.client.openStreamFrames(ctx.artifact(key!))) {
      if (frame.error) throw failed(frame.error);
      if (frame.data.length > 0) {
        progress.add(frame.data.length);
        // Wait for the pipe before asking for the next frame: that is the backpressure.
        if (!out.write(frame.data)) await drained(out);
      }
      if (outError) throw failed(`writing to stdout: ${outError.message}`);
      if (closed || frame.isEnd) break;
    }
  } finally {
    progress.finish();
    out.off("error", onError);
  }
}

/** Resolves when `out` can take more, or can never take more (closed, broken pipe). */
function drained(out: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off("drain", done);
      out.off("error", done);
      out.off("close", done);
      resolve();
    };
    out.on("drain", done);
    out.on("error", done);
    out.on("close", done);
  });
}

process.on("SIGINT", () => {
  // Leaving closes the connection: the plugin cancels the RPC and aborts any upload.
  process.stderr.write(`\n${PROG}: interrupted\n`);
  process.exit(130);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${PROG}: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
