// @ts-check
// Starts versitygw (Versity's S3 gateway, posix backend) on a free loopback
// port with a temporary root directory: the second S3 server of the test
// suite. It is strict where MinIO is lenient (signatures, regions, every
// CRC32, If-Match) and lenient where AWS is strict (it ignores SSE headers).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServerProcess } from "./server.mjs";
import { versitygwBinary } from "./tools.mjs";

/**
 * @typedef {{ endpoint: string, url: string, port: number, accessKey: string, secretKey: string, stop: () => Promise<void>, logs: () => string }} VersitygwServer
 * @returns {Promise<VersitygwServer>}
 */
export async function startVersitygw() {
  const base = mkdtempSync(join(tmpdir(), "versitygw-"));
  const accessKey = "vgw-root";
  const secretKey = `vgw-secret-${Math.random().toString(36).slice(2)}`;
  const env = { PATH: process.env["PATH"] ?? "", HOME: base, ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey };
  const proc = await startServerProcess(
    "versitygw",
    await versitygwBinary(),
    ["--port", "127.0.0.1:0", "--quiet", "posix", base],
    env,
    30_000,
  );
  const { port } = proc;
  return {
    endpoint: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    accessKey,
    secretKey,
    logs: proc.logs,
    stop: async () => {
      await proc.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}
