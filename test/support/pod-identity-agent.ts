// Host side of the Pod Identity agent stand-in (pod-identity-agent.mjs): start
// it inside a network namespace, or in this process on loopback, and control
// it the same way in both cases.
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import type { NetNs, NsChild } from "./netns.js";
import { startAgent } from "./pod-identity-agent.mjs";

export interface AgentMode {
  /** Answer this HTTP status (JSON error body) instead of credentials. */
  status?: number;
  /** Accept the connection and never answer. */
  hang?: boolean;
  /** Report an Expiration this many seconds ahead (MinIO's credentials stay valid 15 min). */
  expiresInSeconds?: number;
}

export interface AgentRequest {
  at: number;
  listener: string;
  path: string;
  /** First 16 hex digits of the SHA-256 of the Authorization header it carried. */
  tokenSha: string;
  tokenOk: boolean;
  status: number;
  accessKeyId?: string;
  expiration?: string;
}

export interface IssuedCredential {
  secretAccessKey: string;
  sessionToken: string;
}

export interface AgentOptions {
  listen: { host: string; port: number }[];
  tokenFile: string;
  minio: { url: string; accessKey: string; secretKey: string };
  bucket: string;
  accountId?: string;
}

export interface Agent {
  requests(): Promise<AgentRequest[]>;
  /** Every credential handed out, by access key id. */
  issued(): Promise<Record<string, IssuedCredential>>;
  setMode(m: AgentMode): Promise<void>;
  /** Port of the first listener (useful when started with port 0). */
  port: number;
  output: () => string;
  stop(): Promise<void>;
}

function control(socketPath: string, method: string, path: string, body?: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { socketPath, method, path, headers: { "content-type": "application/json" }, timeout: 5000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () =>
          res.statusCode === 200
            ? resolve(JSON.parse(text))
            : reject(new Error(`agent control ${method} ${path}: ${res.statusCode}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** The agent as a child process inside `ns`, controlled over a unix socket under `base`. */
export async function startAgentInNetns(ns: NetNs, base: string, opts: AgentOptions): Promise<Agent> {
  const controlSocket = join(base, "agent-control.sock");
  const child: NsChild = ns.spawn(process.execPath, [join(import.meta.dirname, "pod-identity-agent.mjs")], {
    PATH: process.env["PATH"] ?? "",
    AGENT_OPTIONS: JSON.stringify({ ...opts, controlSocket }),
  });
  const line = await child.waitFor(/"ready":true/, 20_000);
  const { addresses } = JSON.parse(line) as { addresses: { port: number }[] };
  return {
    requests: () => control(controlSocket, "GET", "/requests") as Promise<AgentRequest[]>,
    issued: () => control(controlSocket, "GET", "/issued") as Promise<Record<string, IssuedCredential>>,
    setMode: async (m) => void (await control(controlSocket, "PUT", "/mode", m)),
    port: addresses[0]?.port ?? 0,
    output: child.output,
    stop: async () => void (await child.stop()),
  };
}

/** The agent in this process (loopback listeners), for tests that need no namespace. */
export async function startAgentLocal(opts: AgentOptions): Promise<Agent> {
  const a = await startAgent(opts);
  return {
    requests: async () => [...a.requests] as AgentRequest[],
    issued: async () => Object.fromEntries(a.issued) as Record<string, IssuedCredential>,
    setMode: async (m) => a.setMode(m),
    port: a.addresses[0]?.port ?? 0,
    output: () => "",
    stop: () => a.stop(),
  };
}
