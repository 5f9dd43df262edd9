// @ts-check
// A stand-in for the EKS Pod Identity agent: `GET /v1/credentials` with the
// projected service-account token in the `Authorization` header, answered with
// JSON {AccessKeyId, SecretAccessKey, Token, AccountId, Expiration}.
//
// The credentials are real: every successful answer is a fresh MinIO STS
// AssumeRole (MinIO's root keys, a session policy allowing s3:* on one bucket
// only), so the plugin can use them against MinIO and nothing else.
//
// The token is checked against the token file's content *at request time*, so
// once the test rewrites the file the old token is refused (or, with
// `audience`, taken when it is a service-account JWT for that audience). Behaviour can be
// switched while running (answer 4xx/5xx, hang, report a short Expiration) and
// every request is recorded (with a hash of the token it carried, never the
// token); both go through a small HTTP control API on a unix socket, which the
// test reaches from the host even when the agent runs in a network namespace.
//
// Run standalone (e.g. under `ip netns exec`):
//   AGENT_OPTIONS='<json AgentOptions>' node pod-identity-agent.mjs
// (options in the environment, not argv, so MinIO's root key is not in `ps`)
// prints one line `{"ready":true,...}` on stdout once listening.
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { assumeRole, bucketPolicy } from "./sigv4-sts.mjs";

/**
 * @typedef {{
 *   listen: { host: string, port: number }[],
 *   controlSocket?: string,
 *   tokenFile?: string,
 *   audience?: string,
 *   onRequest?: (r: AgentRequest) => void,
 *   minio: { url: string, accessKey: string, secretKey: string },
 *   bucket: string,
 *   accountId?: string,
 * }} AgentOptions
 *
 * @typedef {{
 *   status?: number,          // answer this HTTP status with a JSON error body instead of credentials
 *   hang?: boolean,           // never answer (the client's timeout must fire)
 *   expiresInSeconds?: number // report Expiration this far ahead (MinIO's credentials stay valid 15 min)
 * }} AgentMode
 *
 * @typedef {{ at: number, listener: string, path: string, tokenSha: string, tokenOk: boolean, status: number, accessKeyId?: string, expiration?: string }} AgentRequest
 */

/** The `aud` of a JWT's payload (unverified), [] when it is not one. @param {string} token @returns {string[]} */
function jwtAudiences(token) {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8"));
    return Array.isArray(payload.aud) ? payload.aud : typeof payload.aud === "string" ? [payload.aud] : [];
  } catch {
    return [];
  }
}

/** @param {string} s */
const tokenSha = (s) => createHash("sha256").update(s).digest("hex").slice(0, 16);

/** @param {AgentOptions} opts */
export async function startAgent(opts) {
  /** @type {AgentMode} */
  let mode = {};
  /** @type {AgentRequest[]} */
  const requests = [];
  /** @type {Map<string, { secretAccessKey: string, sessionToken: string }>} everything handed out, by access key id (for the STS stand-in's signature check, and leak checks) */
  const issued = new Map();
  /** @type {Set<import("node:http").ServerResponse>} */
  const hanging = new Set();

  /** @param {string} listener @returns {import("node:http").RequestListener} */
  const handler = (listener) => async (req, res) => {
    /** @param {number} status @param {object} body @param {Partial<AgentRequest>} [extra] */
    const answer = (status, body, extra = {}) => {
      const entry = {
        at: Date.now(),
        listener,
        path: req.url ?? "",
        tokenSha: tokenSha(auth),
        tokenOk,
        status,
        ...extra,
      };
      requests.push(entry);
      opts.onRequest?.(entry);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const auth = typeof req.headers.authorization === "string" ? req.headers.authorization : "";
    let expected = "";
    try {
      expected = opts.tokenFile ? readFileSync(opts.tokenFile, "utf8") : "";
    } catch {
      expected = "";
    }
    // With `audience` (inside the test cluster): a projected service-account token the kubelet
    // wrote for that audience, as EKS's webhook mounts it; the real agent has EKS verify it.
    const tokenOk = opts.audience ? jwtAudiences(auth).includes(opts.audience) : auth !== "" && auth === expected;
    if (req.method !== "GET" || req.url !== "/v1/credentials")
      return answer(404, { Code: "NotFound", Message: `no route ${req.method} ${req.url}` });
    if (mode.hang) {
      requests.push({ at: Date.now(), listener, path: req.url, tokenSha: tokenSha(auth), tokenOk, status: 0 });
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
      return;
    }
    if (mode.status)
      return answer(mode.status, {
        Code: mode.status >= 500 ? "ServiceUnavailable" : "AccessDenied",
        Message: `stand-in configured to answer ${mode.status}`,
      });
    if (!tokenOk) return answer(401, { Code: "InvalidToken", Message: "the service account token is not valid" });
    try {
      const c = await assumeRole({ ...opts.minio, policy: bucketPolicy(opts.bucket), durationSeconds: 900 });
      issued.set(c.accessKeyId, { secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken });
      const expiration =
        mode.expiresInSeconds !== undefined
          ? new Date(Date.now() + mode.expiresInSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")
          : c.expiration;
      return answer(
        200,
        {
          AccessKeyId: c.accessKeyId,
          SecretAccessKey: c.secretAccessKey,
          Token: c.sessionToken,
          AccountId: opts.accountId ?? "123456789012",
          Expiration: expiration,
        },
        { accessKeyId: c.accessKeyId, expiration },
      );
    } catch (e) {
      return answer(500, {
        Code: "InternalError",
        Message: `stand-in could not get credentials from MinIO: ${/** @type {Error} */ (e).message}`,
      });
    }
  };

  const servers = await Promise.all(
    opts.listen.map(
      ({ host, port }) =>
        /** @type {Promise<import("node:http").Server>} */ (
          new Promise((resolve, reject) => {
            const srv = createServer(handler(`${host}:${port}`));
            srv.once("error", reject);
            srv.listen(port, host, () => resolve(srv));
          })
        ),
    ),
  );
  const addresses = servers.map((s) => {
    const a = s.address();
    return typeof a === "object" && a ? { host: a.address, port: a.port } : { host: "", port: 0 };
  });

  /** @type {import("node:http").Server | undefined} */
  let control;
  if (opts.controlSocket) {
    const path = opts.controlSocket;
    rmSync(path, { force: true });
    control = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        if (req.method === "GET" && req.url === "/requests") return res.end(JSON.stringify(requests));
        if (req.method === "GET" && req.url === "/issued") return res.end(JSON.stringify(Object.fromEntries(issued)));
        if (req.method === "PUT" && req.url === "/mode") {
          mode = JSON.parse(body || "{}");
          if (!mode.hang) for (const r of hanging) r.destroy();
          return res.end(JSON.stringify(mode));
        }
        res.statusCode = 404;
        res.end("{}");
      });
    });
    await new Promise((resolve, reject) => {
      control?.once("error", reject);
      control?.listen(path, () => resolve(undefined));
    });
  }

  return {
    addresses,
    requests,
    issued,
    /** @param {AgentMode} m */
    setMode(m) {
      mode = m;
      if (!m.hang) for (const r of hanging) r.destroy();
    },
    async stop() {
      for (const r of hanging) r.destroy();
      await Promise.all(
        [...servers, ...(control ? [control] : [])].map(
          (s) =>
            new Promise((resolve) => {
              s.closeAllConnections();
              s.close(() => resolve(undefined));
            }),
        ),
      );
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const opts = /** @type {AgentOptions} */ (JSON.parse(process.env["AGENT_OPTIONS"] ?? "{}"));
  // AGENT_LOG_REQUESTS=1: one JSON line per request on stdout (a test that cannot reach the control socket).
  if (process.env["AGENT_LOG_REQUESTS"] === "1")
    opts.onRequest = (r) => process.stdout.write(`${JSON.stringify({ request: r })}\n`);
  const agent = await startAgent(opts);
  process.stdout.write(`${JSON.stringify({ ready: true, addresses: agent.addresses })}\n`);
  const quit = () => agent.stop().then(() => process.exit(0));
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
}
