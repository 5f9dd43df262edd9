// @ts-check
// Network profiles for the benchmark. `loopback` talks to MinIO directly;
// `s3-like` puts bench/link (a delaying, rate-capping TCP proxy) between every
// client and MinIO, with figures close to S3 from inside an AWS region.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { goBuild } from "./tools.mjs";

/** @typedef {{ name: string, rttMs: number, connMBps: number, totalMBps: number, note: string }} Profile */

/** @type {Record<string, Profile>} */
export const PROFILES = {
  loopback: {
    name: "loopback",
    rttMs: 0,
    connMBps: 0,
    totalMBps: 0,
    note: "MinIO on 127.0.0.1, no shaping: every stream is CPU-bound",
  },
  "s3-like": {
    name: "s3-like",
    rttMs: 20,
    connMBps: 85,
    totalMBps: 1250,
    note: "20 ms round trip (S3 from a pod in another AZ is 1–20 ms; first-byte latency of S3 GETs is tens of ms), 85 MB/s per connection (AWS's per-connection figure for S3), 1,250 MB/s in total (a 10 Gbit/s node)",
  },
};

/** The link program (bench/link). */
export const linkBinary = () => goBuild("bench/link");

/**
 * The link's arguments for a profile: listen on `listen`, forward to `upstream`.
 * @param {Profile} profile @param {string} listen @param {string} upstream
 */
export function linkArgs(profile, listen, upstream) {
  return [
    "-listen",
    listen,
    "-upstream",
    upstream,
    "-delay",
    `${profile.rttMs / 2}ms`,
    "-conn-rate",
    String(profile.connMBps * 1e6),
    "-total-rate",
    String(profile.totalMBps * 1e6),
  ];
}

/**
 * Starts the link in front of `upstream` ("host:port") for a profile; the
 * loopback profile returns the upstream itself.
 * @param {Profile} profile @param {string} upstream
 * @returns {Promise<{ hostPort: string, stop: () => Promise<void> }>}
 */
export async function startLink(profile, upstream) {
  if (profile.rttMs === 0 && profile.connMBps === 0) return { hostPort: upstream, stop: async () => {} };
  const proc = spawn(await linkBinary(), linkArgs(profile, "127.0.0.1:0", upstream), {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: /** @type {import("node:stream").Readable} */ (proc.stdout) });
  const hostPort = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("bench/link did not start within 10 s")), 10_000);
    proc.once("exit", (code) => reject(new Error(`bench/link exited with ${code} before listening`)));
    lines.on("line", (l) => {
      const m = /^listening (\S+)$/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    hostPort,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}
