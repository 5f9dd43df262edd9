// The image's entrypoint, launcher/launch.c (a small static C program): it binds the
// plugin's socket before Node starts and hands it over as fd 3, so argoexec's
// first look (about 4 ms after it starts the plugin) finds the socket.
// Here: a client that connects while Node has not even started is served once
// it has; the launcher's socket mode is the plugin's own rule (folder sharing,
// ARGO_S3_PLUGIN_SOCKET_MODE); whatever the launcher cannot do it leaves to
// the plugin, whose own errors the user then reads.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, type Socket, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launcherBinary } from "../../scripts/lib/tools.mjs";
import { exitOf, until, within } from "../support/bounded.js";
import { status } from "@grpc/grpc-js";
import { ArtifactClient, ROOT, artifact } from "../support/plugin.js";

let launch: string;
let base: string;

beforeAll(async () => {
  launch = await launcherBinary();
  base = mkdtempSync(join(tmpdir(), "launcher-"));
}, 600_000);
afterAll(() => rmSync(base, { recursive: true, force: true }));

interface Launched {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** launch <program> <script> <socket>: program and script are Node and the plugin unless given. */
function start(
  socket: string,
  env: Record<string, string> = {},
  program = process.execPath,
  script = join(ROOT, "dist", "main.cjs"),
  args: string[] = [],
): Launched {
  const proc = spawn(launch, [program, script, socket, ...args], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  return { proc, output: () => out, exited };
}

async function stop(l: Launched): Promise<number | null> {
  if (l.proc.exitCode === null) l.proc.kill("SIGTERM");
  return within(l.exited, 30_000, "the plugin's exit after SIGTERM");
}

function folder(mode: number): string {
  const dir = mkdtempSync(join(base, "sock-"));
  chmodSync(dir, mode);
  return dir;
}

/** A program (run with /bin/sh) that waits 1.5 s before it becomes the plugin, as a slow node start would. */
function slowPlugin(dir: string): string {
  const slow = join(dir, "slow.sh");
  writeFileSync(
    slow,
    `sleep 1.5\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "dist", "main.cjs"))} "$@"\n`,
  );
  return slow;
}

describe("the launcher", () => {
  it("binds before Node starts: a client that connected then is served once Node takes the socket over", async () => {
    const dir = folder(0o777);
    const socket = join(dir, "socket");
    // The socket must be there all along.
    const slow = slowPlugin(dir);
    const l = start(socket, {}, "/bin/sh", slow);
    try {
      await until("the launcher's socket", () => existsSync(socket), 10_000);
      expect(statSync(socket).isSocket()).toBe(true);
      expect(l.output(), "Node has not started yet").toBe("");
      const client = new ArtifactClient(socket);
      try {
        const caps = await within(client.getCapabilities(), 30_000, "GetCapabilities sent before Node started");
        expect(caps.supportsSaveStream).toBe(true);
      } finally {
        client.close();
      }
      await until("the ready line", () => l.output().includes('"msg":"ready"'), 20_000);
      expect(l.output()).toContain('"socketFrom":"launcher"');
      expect(await stop(l)).toBe(0);
      expect(existsSync(socket), "the plugin removes its socket at the end").toBe(false);
    } finally {
      l.proc.kill("SIGKILL");
    }
  });

  /** The plugin's JSON log lines. */
  const lines = (l: Launched) =>
    l
      .output()
      .split("\n")
      .filter((x) => x.startsWith("{"))
      .map((x) => JSON.parse(x) as Record<string, unknown> & { msg?: string; time: string });
  const at = (line: { time: string } | undefined) => (line ? Date.parse(line.time) : NaN);

  /** The plugin through the launcher, started 1.5 s late, at debug level, its store at `port`; a Load queued before Node runs. */
  async function queuedLoad(port: number) {
    const dir = folder(0o777);
    const socket = join(dir, "socket");
    const l = start(
      socket,
      { AWS_ACCESS_KEY_ID: "AKIDLAUNCHERTEST", AWS_SECRET_ACCESS_KEY: "not-a-secret" },
      "/bin/sh",
      slowPlugin(dir),
      ["--loglevel", "debug"],
    );
    // Each call's deadline: a Load on a store that never answers ends by it, well after the 2 s bound.
    const client = new ArtifactClient(socket, 12_000);
    await until("the launcher's socket", () => existsSync(socket), 10_000);
    const state = { ended: false };
    const load = client
      .load(artifact(`bucket: b\nendpoint: 127.0.0.1:${port}\ninsecure: true\n`, "k"), join(dir, "in"))
      .then(
        (r) => r,
        (e: unknown) => e,
      )
      .finally(() => (state.ended = true));
    return { l, client, load, state };
  }

  it("serves a call queued before Node started before it adds Health and reflection; a call that never ends holds them 2 s at the most", async () => {
    // An init container's Load is on the socket before Node runs; Health and reflection take the
    // event loop for tens of milliseconds, which that Load (and the pod) must not wait for. The
    // store here accepts connections and never answers, so the Load stays in flight.
    const held: Socket[] = [];
    let storeReached = false;
    const store = createServer((c) => {
      storeReached = true;
      held.push(c);
    });
    await new Promise<void>((r) => store.listen(0, "127.0.0.1", r));
    const { l, client, load, state } = await queuedLoad((store.address() as AddressInfo).port);
    try {
      await until("the queued Load at the store", () => storeReached, 30_000);
      const askedAt = Date.now();
      const first = await within(client.health(), 10_000, "Health Check").then(
        (r) => r.status,
        (e: { code?: number }) => e.code,
      );
      const answeredAt = Date.now();
      // Then Health comes, though the Load has not ended (the bound), within a bounded wait.
      for (;;) {
        const now = await within(client.health(), 10_000, "Health Check").then(
          (r) => r.status,
          () => "",
        );
        if (now === "SERVING") break;
        if (Date.now() - answeredAt > 15_000) throw new Error("Health not SERVING within 15 s of a call in flight");
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(state.ended, "the Load is still in flight").toBe(false);
      // By the plugin's own clock: deferred with the Load in flight, added at the 2 s bound.
      const deferred = lines(l).find((x) => x.msg === "Health and reflection deferred: calls in flight");
      const added = lines(l).find((x) => x.msg === "Health and reflection added");
      expect(deferred?.["callsInFlight"], l.output()).toBe(1);
      expect(added?.["deferredMs"], l.output()).toBeGreaterThanOrEqual(1_990);
      // A Check answered before they were added found no Health; one asked after, SERVING.
      if (answeredAt < at(added)) expect(first, "Health before it was added").toBe(status.UNIMPLEMENTED);
      else if (askedAt > at(added)) expect(first).toBe("SERVING");
      const ended = await within(load, 30_000, "the Load's end at its deadline");
      expect((ended as { code?: number }).code).toBe(status.DEADLINE_EXCEEDED);
      expect(await stop(l)).toBe(0);
    } finally {
      client.close();
      l.proc.kill("SIGKILL");
      for (const c of held) c.destroy();
      store.close();
    }
  });

  it("adds Health and reflection once a queued call has ended and none follows", async () => {
    // A store that refuses every request at once: the queued Load fails fast, without retries.
    const store = createHttpServer((_req, res) => {
      res.writeHead(403, { "content-type": "application/xml" });
      res.end("<Error><Code>AccessDenied</Code><Message>denied</Message></Error>");
    });
    await new Promise<void>((r) => store.listen(0, "127.0.0.1", r));
    const { l, client, load } = await queuedLoad((store.address() as AddressInfo).port);
    try {
      const ended = await within(load, 30_000, "the queued Load's end");
      expect((ended as { success?: boolean }).success, "the Load failed on the refusing store").toBe(false);
      await until(
        "Health and reflection added",
        () => lines(l).some((x) => x.msg === "Health and reflection added"),
        10_000,
      );
      const rpc = lines(l).find((x) => x.msg === "rpc" && x["method"] === "Load");
      const added = lines(l).find((x) => x.msg === "Health and reflection added");
      expect(lines(l).find((x) => x.msg === "Health and reflection deferred: calls in flight")?.["callsInFlight"]).toBe(
        1,
      );
      // Added after the Load's end (its rpc line), not before it.
      expect(at(added), l.output()).toBeGreaterThanOrEqual(at(rpc));
      expect((await within(client.health(), 10_000, "Health Check")).status).toBe("SERVING");
      expect(await stop(l)).toBe(0);
    } finally {
      client.close();
      l.proc.kill("SIGKILL");
      store.close();
    }
  });

  it.each([
    ["a folder any uid may write (Argo's emptyDir)", 0o777, {}, 0o666],
    ["a folder without world access", 0o750, {}, 0o660],
    ["ARGO_S3_PLUGIN_SOCKET_MODE=0600", 0o777, { ARGO_S3_PLUGIN_SOCKET_MODE: "0600" }, 0o600],
    ["ARGO_S3_PLUGIN_SOCKET_MODE=640", 0o750, { ARGO_S3_PLUGIN_SOCKET_MODE: "640" }, 0o640],
  ] as const)("gives the socket the plugin's own mode in %s", async (_what, dirMode, env, expected) => {
    for (const via of ["launcher", "plugin"] as const) {
      const socket = join(folder(dirMode), "socket");
      const l =
        via === "launcher"
          ? start(socket, env)
          : (() => {
              const proc = spawn(process.execPath, [join(ROOT, "dist", "main.cjs"), socket], {
                env: { PATH: process.env["PATH"] ?? "", ...env },
                stdio: ["ignore", "pipe", "pipe"],
              });
              let out = "";
              proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
              proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
              return {
                proc,
                output: () => out,
                exited: new Promise<number | null>((r) => proc.once("exit", (code) => r(code))),
              };
            })();
      try {
        await until(`the ready line (${via})`, () => l.output().includes('"msg":"ready"'), 20_000);
        expect(l.output()).toContain(`"socketFrom":"${via}"`);
        expect(statSync(socket).mode & 0o777, `socket mode when bound by the ${via}`).toBe(expected);
        expect(await stop(l)).toBe(0);
      } finally {
        l.proc.kill("SIGKILL");
      }
    }
  });

  it("replaces a dead socket left by a killed plugin", async () => {
    const socket = join(folder(0o777), "socket");
    const first = start(socket);
    await until("the first ready line", () => first.output().includes('"msg":"ready"'), 20_000);
    first.proc.kill("SIGKILL");
    await exitOf(first.proc, 10_000);
    expect(existsSync(socket), "SIGKILL leaves the socket file").toBe(true);
    const second = start(socket);
    try {
      await until("the second ready line", () => second.output().includes('"msg":"ready"'), 20_000);
      expect(second.output()).toContain('"socketFrom":"launcher"');
      expect(await stop(second)).toBe(0);
    } finally {
      second.proc.kill("SIGKILL");
    }
  });

  it.each([
    ["a folder that does not exist", (dir: string) => join(dir, "made", "socket"), {}, 0, /"socketFrom":"plugin"/],
    [
      "a bad ARGO_S3_PLUGIN_SOCKET_MODE",
      (dir: string) => join(dir, "socket"),
      { ARGO_S3_PLUGIN_SOCKET_MODE: "rw-rw-rw-" },
      2,
      /ARGO_S3_PLUGIN_SOCKET_MODE: "rw-rw-rw-" is not an octal file mode/,
    ],
    [
      "a regular file at the path",
      (dir: string) => {
        writeFileSync(join(dir, "socket"), "not a socket");
        return join(dir, "socket");
      },
      {},
      1,
      /exists and is not a unix socket; refusing to replace it/,
    ],
  ] as const)("leaves %s to the plugin, which says what is wrong", async (_what, place, env, code, says) => {
    const dir = folder(0o777);
    const socket = place(dir);
    const l = start(socket, env);
    try {
      if (code === 0) {
        await until("the ready line", () => l.output().includes('"msg":"ready"'), 20_000);
        expect(await stop(l)).toBe(0);
      } else {
        expect(await within(l.exited, 20_000, "the plugin's refusal")).toBe(code);
      }
      expect(l.output()).toMatch(says);
    } finally {
      l.proc.kill("SIGKILL");
    }
  });

  it("leaves a live socket alone: the second plugin is refused, the first keeps serving", async () => {
    const dir = folder(0o777);
    const socket = join(dir, "socket");
    const other = createServer();
    await new Promise<void>((r) => other.listen(socket, r));
    try {
      const l = start(socket);
      expect(await within(l.exited, 20_000, "the refusal")).toBe(1);
      expect(l.output()).toMatch(/another process is serving on this socket/);
      expect(statSync(socket).isSocket()).toBe(true);
    } finally {
      other.close();
    }
  });

  it("runs a program without a socket argument as it is (e.g. --version)", async () => {
    const l = start("--version");
    expect(await within(l.exited, 20_000, "--version")).toBe(0);
    expect(l.output()).toMatch(/^argo-s3-artifact-plugin \d+\.\d+\.\d+/);
  });
});

it("says how to call it when given nothing to run", async () => {
  const proc = spawn(await launcherBinary(), [], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  expect(await exitOf(proc, 10_000)).toBe(2);
  expect(err).toContain("usage: launch <program> <script> <socket-path>");
});
