// @ts-check
// Starts moto in server mode (S3, STS, KMS in one process) on a free loopback
// port: the suite's stand-in for what neither MinIO nor versitygw does like
// AWS (STS AssumeRole for roleARN, SSE-KMS key ids, checksum quirks).
import { startServerProcess } from "./server.mjs";
import { motoServerBinary } from "./tools.mjs";

/**
 * @typedef {{ endpoint: string, url: string, port: number, accessKey: string, secretKey: string, stop: () => Promise<void>, logs: () => string }} MotoServer
 * @returns {Promise<MotoServer>}
 */
export async function startMoto() {
  const env = { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp" };
  const proc = await startServerProcess(
    "moto_server",
    await motoServerBinary(),
    ["-H", "127.0.0.1", "-p", "0"],
    env,
    60_000,
  );
  const { port } = proc;
  return {
    endpoint: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    // moto accepts any keys; these name the caller in its bookkeeping.
    accessKey: "AKIAMOTOTESTKEY00001",
    secretKey: "moto-test-secret",
    logs: proc.logs,
    stop: proc.stop,
  };
}
