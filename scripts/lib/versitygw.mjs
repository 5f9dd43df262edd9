// @ts-check
// Starts versitygw (Versity's S3 gateway, posix backend) on a free loopback
// port with a temporary root directory: the second S3 server of the test
// suite. It is strict where MinIO is lenient (signatures, regions, every
// CRC32, If-Match) and lenient where AWS is strict (it ignores SSE headers).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./minio.mjs";
import { versitygwBinary } from "./tools.mjs";

/**
 * @typedef {{ endpoint: string, url: string, port: number, accessKey: string, secretKey: string, stop: () => Promise<void>, logs: () => string }} VersitygwServer
 * @returns {Promise<VersitygwServer>}
 */
export async function startVersitygw() {
  const bin = await versitygwBinary();
  const port = await freePort();
  const base = mkdtempSync(join(tmpdir(), "versitygw-"));
  const accessKey = "vgw-root";
  const secretKey = `vgw-secret-${Math.random().toString(36).slice(2)}`;
  let output = "";
  const child = spawn(bin, ["--port", `127.0.0.1:${port}`, "--quiet", "posix", base], {
    env: { PATH: process.env["PATH"] ?? "", HOME: base, ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`versitygw exited with ${child.exitCode}:\n${output}`);
    const up = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`versitygw did not listen on 127.0.0.1:${port} in 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    accessKey,
    secretKey,
    logs: () => output,
    stop: async () => {
      process.removeListener("exit", orphanGuard);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
