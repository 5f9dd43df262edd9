// @ts-check
// Starts moto in server mode (S3, STS, KMS in one process) on a free loopback
// port: the suite's stand-in for what neither MinIO nor versitygw does like
// AWS (STS AssumeRole for roleARN, SSE-KMS key ids, checksum quirks).
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { freePort } from "./minio.mjs";
import { motoServerBinary } from "./tools.mjs";

/**
 * @typedef {{ endpoint: string, url: string, port: number, accessKey: string, secretKey: string, stop: () => Promise<void>, logs: () => string }} MotoServer
 * @returns {Promise<MotoServer>}
 */
export async function startMoto() {
  const bin = await motoServerBinary();
  const port = await freePort();
  let output = "";
  const child = spawn(bin, ["-H", "127.0.0.1", "-p", String(port)], {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d) => (output = (output + d).slice(-100_000)));
  child.stderr?.on("data", (d) => (output = (output + d).slice(-100_000)));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}:\n${output}`);
    const up = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`moto_server did not listen on 127.0.0.1:${port} in 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    // moto accepts any keys; these name the caller in its bookkeeping.
    accessKey: "AKIAMOTOTESTKEY00001",
    secretKey: "moto-test-secret",
    logs: () => output,
    stop: async () => {
      process.removeListener("exit", orphanGuard);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}
