// @ts-check
// The TCP ports a process listens on, read from /proc (Linux): a server told
// to bind port 0 picks its own, and this finds which. No port is chosen here
// and bound later by someone else (another test's server could take it first).
import { readFileSync, readdirSync, readlinkSync } from "node:fs";

/** @param {number} pid @returns {number[]} the ports of its listening TCP sockets (IPv4 and IPv6) */
export function listeningPorts(pid) {
  /** @type {Set<string>} */
  const inodes = new Set();
  let fds = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  /** @type {Set<number>} */
  const ports = new Set();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is f[1] ("ADDR:PORT" in hex), st is f[3] ("0A": LISTEN), inode is f[9].
      if (f[3] === "0A" && f[9] && inodes.has(f[9])) ports.add(Number.parseInt(f[1]?.split(":")[1] ?? "", 16));
    }
  }
  return [...ports].filter((p) => Number.isInteger(p) && p > 0);
}
