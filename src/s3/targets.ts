// Builds the S3 clients for one configuration and caches them by configuration
// text (plus the CA bundle's content, which can change under a secret): an RPC
// reuses the client, its connection pool and its credential cache.
import { createHash } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { Socket } from "node:net";
import { Readable, Transform, pipeline } from "node:stream";
import { rootCertificates } from "node:tls";
import { S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { PluginConfig } from "../config/types.js";
import { Lru } from "../util/lru.js";
import { PluginError } from "../errors.js";
import { type CredentialSource, chooseCredentials } from "./credentials.js";
import { Encryption } from "./encryption.js";
import type { SecretSource } from "./kube-secrets.js";
import {
  type EndpointPolicy,
  checkEndpoint,
  endpointHost,
  endpointPort,
  guardedLookup,
  peerCheck,
} from "./endpoint-guard.js";
import { LeanRequests } from "./lean-requests.js";
import { LeanStore, SdkStore, type StoreOptions } from "./store.js";
import type { StoreTarget } from "../store/port.js";
import { publishS3Request, s3RequestObserved } from "./events.js";

/** Everything the layers above need to talk to one bucket: the port's target, with what built it. */
export interface S3Target extends StoreTarget {
  /** Every S3 request for this bucket goes through it (retrying, or one attempt for OpenStream). */
  readonly store: SdkStore;
  /** The two clients behind the store (closed when the target is evicted). */
  readonly clients: readonly S3Client[];
  /** Human-readable endpoint for error messages, e.g. "http://127.0.0.1:9000". */
  readonly endpointLabel: string;
  readonly credentialSource: CredentialSource;
  /** The connection pools, closed when the target is evicted. */
  readonly agents: readonly HttpAgent[];
  /** GetObject's lean data path, when this configuration has one (closed when evicted). */
  readonly lean: LeanRequests | undefined;
}

/** A bucket name that can be the first label of a host name (no dots: TLS wildcards cover one label). */
const DNS_LABEL_BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/**
 * Where the lean GET goes, or undefined where only the SDK knows the way:
 * AWS without a configured region, named endpoint or not (S3's redirect to the
 * bucket's region is followed by the SDK), and FIPS or dual-stack endpoints
 * (chosen by the SDK's endpoint rules). Everything else is a host, a port and path or
 * virtual-hosted style, exactly as the SDK builds it.
 */
/**
 * The endpoint the SDK takes from the environment when the configuration names
 * none (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL), as messages name it:
 * scheme, host and port only, never user information.
 */
export function envEndpointLabel(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env["AWS_ENDPOINT_URL_S3"] || env["AWS_ENDPOINT_URL"];
  if (!raw) return undefined;
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "the endpoint in AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL";
  }
}

export function leanGetRoute(
  cfg: PluginConfig,
  region: string,
  env: NodeJS.ProcessEnv,
): { protocol: "http:" | "https:"; host: string; port: number; pathStyle: boolean } | undefined {
  const truthy = (v: string | undefined) => v !== undefined && /^(true|1)$/i.test(v.trim());
  if (truthy(env["AWS_USE_FIPS_ENDPOINT"]) || truthy(env["AWS_USE_DUALSTACK_ENDPOINT"])) return undefined;
  if (!cfg.endpoint && (env["AWS_ENDPOINT_URL_S3"] || env["AWS_ENDPOINT_URL"])) return undefined;
  // AWS without a configured region (with or without an endpoint such as s3.amazonaws.com):
  // the bucket may live in any region, and only the SDK follows S3's redirect to it.
  if (!cfg.region && isAwsEndpoint(cfg.endpoint)) return undefined;
  const protocol = cfg.endpoint && cfg.insecure ? "http:" : "https:";
  const host = cfg.endpoint ? endpointHost(cfg.endpoint) : `s3.${region}.amazonaws.com`;
  const port = (cfg.endpoint ? endpointPort(cfg.endpoint) : undefined) ?? (protocol === "https:" ? 443 : 80);
  const pathStyle = usePathStyle(cfg) || !DNS_LABEL_BUCKET.test(cfg.bucket);
  return { protocol, host: pathStyle ? host : `${cfg.bucket}.${host}`, port, pathStyle };
}

export function isAwsEndpoint(endpoint: string): boolean {
  const host = endpoint.replace(/:\d+$/, "").toLowerCase();
  return host === "" || host.endsWith(".amazonaws.com") || host.endsWith(".amazonaws.com.cn");
}

/** Path style for everything but AWS itself, unless the configuration says otherwise. */
export function usePathStyle(cfg: PluginConfig): boolean {
  if (cfg.addressingStyle === "path") return true;
  if (cfg.addressingStyle === "virtual-hosted") return false;
  return !isAwsEndpoint(cfg.endpoint);
}

export function endpointUrl(cfg: PluginConfig): string | undefined {
  if (!cfg.endpoint) return undefined;
  return `${cfg.insecure ? "http" : "https"}://${cfg.endpoint}`;
}

export function effectiveRegion(cfg: PluginConfig, env: NodeJS.ProcessEnv): string {
  return cfg.region || env["AWS_REGION"] || env["AWS_DEFAULT_REGION"] || "us-east-1";
}

/** Commands whose body is data we send: their integrity rides on a CRC32 checksum header. */
const DATA_UPLOADS = new Set(["PutObjectCommand", "UploadPartCommand"]);

/**
 * Skip SigV4's SHA-256 pass over upload bodies: the SDK's flexible checksum
 * (CRC32, computed natively with zlib) goes in a signed header and S3 verifies
 * it, so the payload is still checked end to end, at a fraction of the CPU.
 * This is what the SDK itself does for streamed bodies over HTTPS.
 */
function skipPayloadHashing(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string> };
      if (DATA_UPLOADS.has(context.commandName ?? "") && req.headers) {
        req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    },
    { step: "build", name: "argoS3UnsignedPayload", override: true },
  );
}

/** How long an evicted target's clients live on for RPCs still using them. */
const EVICTED_CLIENT_GRACE_MS = 10 * 60_000;

/** Close an evicted target's clients: idle sockets at once, the rest after the grace. */
function retire(target: Promise<S3Target>): void {
  target.then(
    (t) => {
      for (const agent of t.agents) {
        for (const list of Object.values(agent.freeSockets)) for (const sock of list ?? []) sock.destroy();
      }
      setTimeout(() => {
        for (const c of t.clients) c.destroy();
        t.lean?.close();
      }, EVICTED_CLIENT_GRACE_MS).unref();
    },
    () => undefined,
  );
}

/**
 * DeleteObjects carries Content-MD5, which AWS documents as required for it
 * and some S3 implementations insist on (the SDK itself sends only a CRC32).
 */
function contentMd5ForDeleteObjects(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string>; body?: unknown };
      if (
        context.commandName === "DeleteObjectsCommand" &&
        req.headers &&
        (typeof req.body === "string" || req.body instanceof Uint8Array)
      ) {
        req.headers["content-md5"] = createHash("md5").update(req.body).digest("base64");
      }
      return next(args);
    },
    { step: "build", name: "argoS3DeleteObjectsMd5", override: true },
  );
}

/** Largest answer read whole: listings are ≈ 0.3 MiB per 1,000 keys, errors a few hundred bytes. */
export const MAX_NON_DATA_RESPONSE = 8 * 1024 * 1024;

/**
 * Every answer the SDK reads whole (listings, errors, anything but a successful
 * GetObject's data) passes a byte counter and is cut with an error past
 * MAX_NON_DATA_RESPONSE: a store (or an author's endpoint) answering with
 * hundreds of MiB must not become hundreds of MiB of memory here.
 */
function capResponses(client: S3Client, bodyDeadlineMs: number): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      const res = out.response as { statusCode?: number; body?: unknown };
      const data = context.commandName === "GetObjectCommand" && (res.statusCode ?? 500) < 300;
      if (!data && res.body instanceof Readable) {
        // A listing asked for N keys has room for N keys (XML escaping included), no more: an
        // IsDirectory page (one key) is cut at 24 KiB, not at the general cap.
        const maxKeys =
          context.commandName === "ListObjectsV2Command" ? (args.input as { MaxKeys?: number }).MaxKeys : undefined;
        const cap =
          maxKeys === undefined
            ? MAX_NON_DATA_RESPONSE
            : Math.min(MAX_NON_DATA_RESPONSE, 16 * 1024 + maxKeys * 8 * 1024);
        let seen = 0;
        const op = context.commandName?.replace(/Command$/, "") ?? "S3 request";
        const limit = new Transform({
          transform(chunk: Buffer, _enc, done) {
            seen += chunk.length;
            if (seen > cap) {
              done(
                new Error(
                  `the answer to ${op} is larger than ${cap >= 1024 * 1024 ? `${Math.round((cap / 1024 / 1024) * 10) / 10} MiB` : `${cap / 1024} KiB`}${maxKeys === undefined ? "" : ` for ${maxKeys} key${maxKeys === 1 ? "" : "s"}`}; refusing to read it (is the endpoint an S3 server?)`,
                ),
              );
              return;
            }
            done(null, chunk);
          },
        });
        // A body that never completes (a store dripping a byte a second) ends here, naming the wait.
        // Not a CompleteMultipartUpload's: S3 answers its head at once and then sends whitespace while it
        // assembles the object, minutes for a large one; that body keeps to the socket's idle timer.
        const timer =
          context.commandName === "CompleteMultipartUploadCommand"
            ? undefined
            : setTimeout(
                () =>
                  limit.destroy(
                    new Error(
                      `the answer to ${op} did not complete within ${Math.round(bodyDeadlineMs / 1000)} s (requestTimeoutSeconds)`,
                    ),
                  ),
                bodyDeadlineMs,
              );
        timer?.unref();
        limit.once("close", () => clearTimeout(timer));
        limit.once("end", () => clearTimeout(timer));
        res.body = pipeline(res.body, limit, () => clearTimeout(timer));
      }
      return out;
    },
    { step: "deserialize", priority: "low", name: "argoS3ResponseCap", override: true },
  );
}

/** One S3RequestEnded per S3 command (events.ts): operation, bucket, key, status, attempts, time. */
function publishRequests(client: S3Client, endpointLabel: string): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!s3RequestObserved()) return next(args);
      const input = args.input as {
        Bucket?: string;
        Key?: string;
        Prefix?: string;
        Range?: string;
        PartNumber?: number;
      };
      const started = process.hrtime.bigint();
      const base = {
        s3: context.commandName?.replace(/Command$/, "") ?? "unknown",
        bucket: input.Bucket,
        key: input.Key ?? input.Prefix,
        range: input.Range,
        part: input.PartNumber,
        endpoint: endpointLabel,
      };
      const ms = () => Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10;
      try {
        const out = await next(args);
        const meta = (out.output as { $metadata?: { httpStatusCode?: number; attempts?: number } }).$metadata;
        publishS3Request({ ...base, status: meta?.httpStatusCode, attempts: meta?.attempts, ms: ms() });
        return out;
      } catch (e) {
        const err = e as { name?: string; $metadata?: { httpStatusCode?: number; attempts?: number } };
        publishS3Request({
          ...base,
          status: err.$metadata?.httpStatusCode,
          attempts: err.$metadata?.attempts,
          error: err.name,
          ms: ms(),
        });
        throw e;
      }
    },
    { step: "initialize", name: "argoS3RequestEnded", override: true },
  );
}

/**
 * The agent's new sockets are judged by `check` once connected; a refused peer
 * ends the socket before any request is written (a TLS socket has sent its
 * ClientHello by then: the server name, nothing more).
 */
export function checkingPeers<A extends HttpAgent>(
  agent: A,
  check: (address: string | undefined) => string | undefined,
): A {
  const a = agent as unknown as {
    createConnection: (opts: object, cb?: (err: Error | null, s: Socket) => void) => Socket;
  };
  const create = a.createConnection.bind(agent);
  a.createConnection = (opts, cb) => {
    const socket = create(opts, cb);
    socket.once("connect", () => {
      const problem = check(socket.remoteAddress);
      if (problem) socket.destroy(Object.assign(new Error(`endpoint: ${problem}`), { code: "EADDRNOTAVAIL" }));
    });
    return socket;
  };
  return agent;
}

export interface TargetOptions {
  /** The process environment as main read it: the AWS SDK's own variables (region, credential chain). */
  env: NodeJS.ProcessEnv;
  endpoints?: EndpointPolicy;
  /**
   * The shared argo-server sidecar: the roles (roleARN) a configuration may
   * have argo-server's identity assume; undefined: any (a workflow's own pod).
   */
  roles?: readonly string[] | undefined;
  /**
   * The shared argo-server sidecar: the configuration's requestTimeoutSeconds
   * and maxAttempts are held to these, so an author's unanswering store cannot
   * keep a UI call (and its slot) for a day; and an answer's body must keep
   * minBodyRate, so a store that trickles ends each range within minutes.
   */
  clamp?: { requestTimeoutMs: number; maxAttempts: number; minBodyRate?: number } | undefined;
}

export class S3TargetFactory {
  private readonly cache = new Lru<string, Promise<S3Target>>(32, (_k, t) => retire(t));

  constructor(
    private readonly secrets: SecretSource,
    private readonly opts: TargetOptions,
  ) {}

  async get(configured: PluginConfig, configText: string): Promise<S3Target> {
    const clamp = this.opts.clamp;
    const cfg =
      clamp &&
      (configured.tuning.requestTimeoutMs > clamp.requestTimeoutMs || configured.tuning.maxAttempts > clamp.maxAttempts)
        ? {
            ...configured,
            tuning: {
              ...configured.tuning,
              requestTimeoutMs: Math.min(configured.tuning.requestTimeoutMs, clamp.requestTimeoutMs),
              maxAttempts: Math.min(configured.tuning.maxAttempts, clamp.maxAttempts),
            },
          }
        : configured;
    // Before anything is read or sent on the configuration's behalf.
    checkEndpoint(cfg.endpoint, this.opts.endpoints ?? { allowed: [] });
    if (cfg.roleARN && this.opts.roles && !this.opts.roles.includes(cfg.roleARN)) {
      throw new PluginError(
        "credentials",
        `roleARN "${cfg.roleARN}" may not be assumed by this plugin: it is the shared argo-server sidecar, which assumes no role a workflow names with argo-server's identity unless the operator lists it in ARGO_S3_PLUGIN_ALLOWED_ROLES`,
      );
    }
    const ca = cfg.caSecret ? await this.secrets.get(cfg.caSecret) : undefined;
    const cacheKey = ca ? `${configText}\0${createHash("sha256").update(ca).digest("hex")}` : configText;
    let target = this.cache.get(cacheKey);
    if (!target) {
      target = Promise.resolve(this.build(cfg, ca));
      this.cache.set(cacheKey, target);
    }
    return target;
  }

  private build(cfg: PluginConfig, ca: Buffer | undefined): S3Target {
    const region = effectiveRegion(cfg, this.opts.env);
    const endpoint = endpointUrl(cfg);
    const creds = chooseCredentials(cfg, this.secrets, region, this.opts.env);
    // One pool per target, sized for part concurrency × file concurrency.
    const maxSockets = Math.max(16, cfg.tuning.partConcurrency * 2, cfg.tuning.fileConcurrency * 2);
    // Every connection's address is checked after resolution (see endpoint-guard.ts).
    // No endpoint in the configuration: the SDK's own (AWS, or AWS_ENDPOINT_URL_S3 the operator set
    // in the plugin's environment, perhaps a local proxy): the operator's choice, loopback or not.
    const operatorChose =
      cfg.endpoint === "" && Boolean(this.opts.env["AWS_ENDPOINT_URL_S3"] || this.opts.env["AWS_ENDPOINT_URL"]);
    const policy =
      operatorChose && this.opts.endpoints ? { ...this.opts.endpoints, refuseLoopback: false } : this.opts.endpoints;
    const lookup = guardedLookup(policy, cfg.endpoint);
    const checkPeer = peerCheck(policy, cfg.endpoint);
    const agentOpts = { keepAlive: true, maxSockets, lookup };
    const httpAgent = checkingPeers(new HttpAgent(agentOpts), checkPeer);
    // The custom CA is added to the public roots, not put in their place; it applies to the S3 endpoint only.
    const httpsAgent = checkingPeers(
      new HttpsAgent(ca ? { ...agentOpts, ca: [...rootCertificates, ca.toString("utf8")] } : agentOpts),
      checkPeer,
    );
    const handler = new NodeHttpHandler({
      httpAgent,
      httpsAgent,
      connectionTimeout: 10_000,
      // The socket idle timeout. (@smithy/node-http-handler 4.x's `requestTimeout` is a
      // whole-request timer that only logs a warning, so a hung store would hang the RPC.)
      socketTimeout: cfg.tuning.requestTimeoutMs,
      // A request given its own requestTimeout (GetObject's head deadline, store.ts) fails when it
      // passes; none is set here, so uploads are not cut by a deadline sized for a head.
      throwOnRequestTimeout: true,
    });
    const common = {
      region,
      endpoint,
      forcePathStyle: usePathStyle(cfg),
      credentials: creds.provider,
      requestHandler: handler,
      // Without a configured region, follow S3's redirect to the bucket's region as Argo's client does.
      followRegionRedirects: !cfg.region,
      // Checksums are computed and verified by the transfer engine itself (src/transfer/crc32.ts),
      // once per byte; the SDK's own pass would only repeat the work.
      requestChecksumCalculation: "WHEN_REQUIRED" as const,
      responseChecksumValidation: "WHEN_REQUIRED" as const,
    };
    const client = new S3Client({ ...common, maxAttempts: cfg.tuning.maxAttempts, retryMode: "standard" });
    const singleAttemptClient = new S3Client({ ...common, maxAttempts: 1 });
    if (cfg.tuning.checksum === "crc32") {
      skipPayloadHashing(client);
      skipPayloadHashing(singleAttemptClient);
    }
    capResponses(client, cfg.tuning.requestTimeoutMs);
    capResponses(singleAttemptClient, cfg.tuning.requestTimeoutMs);
    contentMd5ForDeleteObjects(client);
    const label = endpoint ?? envEndpointLabel(this.opts.env) ?? `AWS S3 (${region})`;
    publishRequests(client, label);
    publishRequests(singleAttemptClient, label);
    const route = leanGetRoute(cfg, region, this.opts.env);
    const lean = route
      ? new LeanRequests({
          ...route,
          bucket: cfg.bucket,
          region,
          credentials: creds.provider,
          ca: ca ? [...rootCertificates, ca.toString("utf8")] : undefined,
          lookup,
          checkPeer,
          maxSockets,
          connectTimeoutMs: 10_000,
          requestTimeoutMs: cfg.tuning.requestTimeoutMs,
          minBodyRate: this.opts.clamp?.minBodyRate,
        })
      : undefined;
    const storeOptions: StoreOptions = {
      bucket: cfg.bucket,
      endpoint: label,
      retrying: client,
      singleAttempt: singleAttemptClient,
      encryption: new Encryption(cfg, this.secrets),
      createBucket: cfg.createBucketIfNotPresent
        ? { objectLocking: cfg.createBucketIfNotPresent.objectLocking, kmsKeyId: cfg.encryptionOptions?.kmsKeyId }
        : undefined,
      maxAttempts: cfg.tuning.maxAttempts,
      requestTimeoutMs: cfg.tuning.requestTimeoutMs,
      minBodyRate: this.opts.clamp?.minBodyRate,
    };
    return {
      cfg,
      bucket: cfg.bucket,
      store: lean ? new LeanStore(storeOptions, lean) : new SdkStore(storeOptions),
      lean,
      clients: [client, singleAttemptClient],
      endpointLabel: label,
      credentialSource: creds.source,
      agents: [httpAgent, httpsAgent],
    };
  }
}
