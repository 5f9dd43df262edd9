// @ts-check
// A test server process listening on a loopback port of its own choosing: told
// to bind port 0, its port read back from /proc (never picked here and bound
// later, when another process may have taken it), waited for (the port
// accepts a connection), killed with the test process if orphaned, and stopped
// with SIGTERM (SIGKILL after 5 s).
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { listeningPorts } from "./listening.mjs";

/**
 * @param {string} name for messages @param {string} bin @param {string[]} args, with port 0 where it listens
 * @param {Record<string, string>} env @param {number} readyWithinMs
 * @returns {Promise<{ port: number, logs: () => string, stop: () => Promise<void> }>}
 */
export async function startServerProcess(name, bin, args, env, readyWithinMs) {
  let output = "";
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (d) => (output = (output + d).slice(-100_000)));
  child.stderr?.on("data", (d) => (output = (output + d).slice(-100_000)));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);
  const deadline = Date.now() + readyWithinMs;
  let port = 0;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${output}`);
    const mine = child.pid ? listeningPorts(child.pid) : [];
    if (mine.length === 1) port = /** @type {number} */ (mine[0]);
    const up =
      port !== 0 &&
      (await new Promise((resolve) => {
        const s = connect(port, "127.0.0.1");
        s.once("connect", () => (s.destroy(), resolve(true)));
        s.once("error", () => resolve(false));
      }));
    if (up) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(
        `${name} did not listen on one port of 127.0.0.1 in ${readyWithinMs / 1000} s (listening on ${JSON.stringify(mine)}):\n${output}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
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
