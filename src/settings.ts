// The process's settings, read once at start-up from its arguments, its
// environment and its container's memory limit, and passed down from main.
// Argo starts the plugin as `<entrypoint> <socket> [executor args...]`: plugin
// containers inherit the executor's args (e.g. `--loglevel debug --gloglevel
// 6`), so anything after the socket path is accepted, `--loglevel` honoured.
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { DEFAULT_SERVICEACCOUNT_DIR, secretKeyProblem, secretNameProblem } from "./util/kube-names.js";

const MiB = 1024 * 1024;

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Settings {
  socketPath: string;
  logLevel: LogLevel;
  /** Arguments after the socket path that mean nothing to the plugin (logged once). */
  ignoredArgs: string[];
  graceMs: number;
  /** Explicit socket mode; undefined: follow the socket folder's sharing (see wire/socket.ts). */
  socketMode: number | undefined;
  /** A socket the image's launcher (launcher/launch.c) already bound and listens on, for socketPath. */
  listenFd: number | undefined;
  progressIntervalMs: number;
  streamIdleMs: number;
  /** Transfer buffer budget in bytes. */
  bufferBytes: number;
  /** Where bufferBytes came from, for the start-up line. */
  bufferSource: "ARGO_S3_PLUGIN_BUFFER_MIB" | "memory limit" | "default";
  /** The container's memory limit, when it has one. */
  memoryLimitBytes: number | undefined;
  /** RPCs moving data at once; more wait their turn (memory outside the buffer budget grows with them). */
  maxConcurrentTransfers: number;
  lateUploadWatchMs: number;
  /**
   * In a workflow's pod: once a Save was served, leave when no client has been connected for this
   * long (its wait container died without the stop; wire/client-gone.ts); undefined: never.
   */
  leaveWhenClientGoneMs: number | undefined;
  /**
   * Where Argo writes this container's stop (`signal`, util/signal-file.ts): a container Argo's
   * controller named (ARGO_CONTAINER_NAME); undefined elsewhere and in the shared sidecar.
   */
  argoSignalDir: string | undefined;
  /** The shared argo-server sidecar: secrets and roles only from the allow lists, no loopback endpoints. */
  shared: boolean;
  /** In the shared sidecar: the bound on a whole ListObjects or IsDirectory, every page included. */
  sharedListingMs: number;
  /** Why `shared` is what it is (in the ready line). */
  sharedBecause: string;
  /** Roles (roleARN) the shared sidecar may assume. */
  allowedRoles: string[];
  /** Prometheus metrics on this TCP port (GET /metrics); undefined: off. */
  metricsPort: number | undefined;
  /** The IP address the metrics port listens on; undefined: every address. */
  metricsAddress: string | undefined;
  /** OpenTelemetry traces over OTLP, from the standard OTEL_* variables; undefined: off. */
  tracing: TracingSettings | undefined;
  /** Operator-listed secrets the shared sidecar may read: a whole secret, or one key of it. */
  allowedSecrets: AllowedSecret[];
  /** host[:port] list; empty: any endpoint that is not link-local / metadata. */
  allowedEndpoints: string[];
  /** host[:port] list: the operator's own stores; in the shared sidecar every other endpoint is an author's. */
  operatorEndpoints: string[];
}

/** ARGO_S3_PLUGIN_BUFFER_MIB in bytes (default 96 MiB); throws a readable error when malformed. */
export function bufferBudgetFromEnv(env: NodeJS.ProcessEnv): number {
  const v = env["ARGO_S3_PLUGIN_BUFFER_MIB"];
  if (!v) return DEFAULT_BUFFER;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 8)
    throw new Error(`ARGO_S3_PLUGIN_BUFFER_MIB: "${v}" is not a whole number of MiB ≥ 8`);
  return n * MiB;
}

/** A start-up problem: printed as one line, exit 2. */
export class SettingsError extends Error {}

export type ParsedArgs =
  | { help: true }
  | { version: true }
  | { help: false; socketPath: string; logLevel: string | undefined; ignoredArgs: string[] };

export function parseArgs(args: string[]): ParsedArgs {
  if (args.length === 0) throw new SettingsError("missing the socket path");
  if (args[0] === "-h" || args[0] === "--help") return { help: true };
  if (args[0] === "--version" || args[0] === "-v") return { version: true };
  const socketPath = args[0]!;
  if (socketPath === "" || socketPath.startsWith("-"))
    throw new SettingsError(`the first argument must be the socket path, got "${socketPath}"`);
  let logLevel: string | undefined;
  const ignoredArgs: string[] = [];
  for (let i = 1; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--loglevel" && i + 1 < args.length) logLevel = args[++i];
    else if (a.startsWith("--loglevel=")) logLevel = a.slice("--loglevel=".length);
    else ignoredArgs.push(a);
  }
  return { help: false, socketPath, logLevel, ignoredArgs };
}

function logLevelOf(name: string, v: string): LogLevel {
  const l = v.toLowerCase();
  // Argo's executor speaks logrus: "warning" and "panic" are its spellings.
  const mapped = l === "warning" ? "warn" : l === "panic" ? "fatal" : l;
  if (!(LOG_LEVELS as readonly string[]).includes(mapped))
    throw new SettingsError(`${name}: "${v}" is not a log level (one of ${LOG_LEVELS.join(", ")})`);
  return mapped as LogLevel;
}

function seconds(env: NodeJS.ProcessEnv, name: string, fallbackMs: number, min = 0): number {
  const v = env[name];
  if (!v) return fallbackMs;
  const n = Number(v);
  if (!/^\s*[0-9.]+\s*$/.test(v) || !Number.isFinite(n) || n < min)
    throw new SettingsError(`${name}: "${v}" is not a number of seconds${min > 0 ? ` ≥ ${min}` : ""}`);
  return n * 1000;
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean {
  const v = (env[name] ?? "").trim().toLowerCase();
  if (v === "" || v === "false" || v === "0") return false;
  if (v === "true" || v === "1") return true;
  throw new SettingsError(`${name}: "${env[name]}" is not true or false`);
}

function list(v: string | undefined): string[] {
  return (v ?? "")
    .split(/[,\s]+/)
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

export interface AllowedSecret {
  name: string;
  /** Undefined: any key of the secret. */
  key?: string;
}

/** One ARGO_S3_PLUGIN_ALLOWED_SECRETS entry, "name" or "name/key", each part as Kubernetes allows it. */
function allowedSecret(entry: string): AllowedSecret {
  const parts = entry.split("/");
  const [name = "", key] = parts;
  const badName = secretNameProblem(name);
  const badKey = key === undefined ? undefined : secretKeyProblem(key);
  const problem =
    parts.length > 2 ? "has more than one '/'" : badName ? `name ${badName}` : badKey ? `key ${badKey}` : undefined;
  if (problem)
    throw new SettingsError(
      `ARGO_S3_PLUGIN_ALLOWED_SECRETS: entry "${entry}" ${problem}; entries are "name" or "name/key", separated by commas`,
    );
  return key === undefined ? { name } : { name, key };
}

export interface TracingSettings {
  /** OTLP transport; the exporters read the endpoint, headers and timeout from the same environment (checked here). */
  protocol: "grpc" | "http/protobuf";
  sampler: { kind: "always_on" | "always_off" | "traceidratio"; parentBased: boolean; ratio: number };
  /** The batch span processor (OTEL_BSP_*): spans waiting at most, per export, ms between exports, ms an export may take. */
  batch: {
    maxQueueSize: number;
    maxExportBatchSize: number;
    scheduledDelayMillis: number;
    exportTimeoutMillis: number;
  };
  /** Longest attribute value kept (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT or OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, default 1024): keys are any author's. */
  attributeValueLengthLimit: number;
}

/** A positive whole number from the environment, or the default; never echoes more than the variable's name and value. */
function wholeNumber(env: NodeJS.ProcessEnv, name: string, dflt: number, min = 1): number {
  const v = (env[name] ?? "").trim();
  if (v === "") return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new SettingsError(`${name}: "${v}" is not a whole number${min > 0 ? ` ≥ ${min}` : ""}`);
  return Number(v);
}

/**
 * The OTLP exporter variables the exporters would otherwise take as they come
 * (a scheme-less endpoint fails every export later; a header value a gRPC
 * exporter refuses would be quoted in its error): checked at start. A
 * header's value is never repeated: it is usually a token.
 */
function otlpExporterProblems(env: NodeJS.ProcessEnv): void {
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
    const v = (env[name] ?? "").trim();
    if (v === "") continue;
    let url: URL | undefined;
    try {
      url = new URL(v);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
      throw new SettingsError(
        `${name}: not an http:// or https:// URL with a host (e.g. http://otel-collector:4318); the collector's address goes here`,
      );
    }
    if (url.username || url.password)
      throw new SettingsError(
        `${name}: credentials in the URL are not accepted; put them in OTEL_EXPORTER_OTLP_HEADERS`,
      );
  }
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]) {
    const v = env[name] ?? "";
    if (v.trim() === "") continue;
    for (const pair of v.split(",")) {
      if (pair.trim() === "") continue;
      const eq = pair.indexOf("=");
      const key = (eq < 0 ? pair : pair.slice(0, eq)).trim();
      if (eq < 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key))
        throw new SettingsError(
          `${name}: an entry is not "key=value" with a header name as key; entries are separated by commas`,
        );
      let value: string;
      try {
        value = decodeURIComponent(pair.slice(eq + 1).trim());
      } catch {
        throw new SettingsError(
          `${name}: the value of "${key}" is not valid percent-encoding (the value is not shown)`,
        );
      }
      if (!/^[\x20-\x7e]*$/.test(value))
        throw new SettingsError(
          `${name}: the value of "${key}" holds characters a header cannot carry (control or non-ASCII; the value is not shown)`,
        );
    }
  }
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"])
    wholeNumber(env, name, 10_000);
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"]) {
    const v = (env[name] ?? "").trim();
    if (v !== "" && v !== "gzip" && v !== "none") throw new SettingsError(`${name}: "${v}" is not gzip or none`);
  }
  const propagators = (env["OTEL_PROPAGATORS"] ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  const unknown = propagators.filter((p) => p !== "tracecontext" && p !== "baggage" && p !== "none");
  if (unknown.length > 0)
    throw new SettingsError(
      `OTEL_PROPAGATORS: ${unknown.map((p) => `"${p}"`).join(", ")} not supported; the plugin reads W3C trace context (tracecontext) only`,
    );
}

const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
];

/**
 * Traces are on when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
 * its _TRACES_ form) or OTEL_TRACES_EXPORTER=otlp, and off with
 * OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true: without an endpoint the
 * OTLP default (localhost) would send every pod's spans nowhere. Values the
 * plugin cannot honour stop start-up instead of being ignored.
 */
function tracing(env: NodeJS.ProcessEnv): TracingSettings | undefined {
  const get = (name: string) => (env[name] ?? "").trim();
  if (get("OTEL_SDK_DISABLED").toLowerCase() === "true") return undefined;
  const exporter = get("OTEL_TRACES_EXPORTER").toLowerCase();
  if (exporter === "none") return undefined;
  if (exporter !== "" && exporter !== "otlp") {
    throw new SettingsError(
      `OTEL_TRACES_EXPORTER: "${env["OTEL_TRACES_EXPORTER"]}" is not supported; the plugin exports traces over OTLP only: set otlp, or none to turn them off`,
    );
  }
  if (exporter === "" && get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") === "" && get("OTEL_EXPORTER_OTLP_ENDPOINT") === "")
    return undefined;
  const protocolVar =
    get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") !== ""
      ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
      : "OTEL_EXPORTER_OTLP_PROTOCOL";
  // gRPC by default, as Argo's controller and argoexec (util/telemetry): plugin containers inherit the
  // executor's env, so an operator who sets only the endpoint for Argo gets the plugin's spans too.
  const protocol = get(protocolVar) || "grpc";
  if (protocol !== "grpc" && protocol !== "http/protobuf") {
    throw new SettingsError(
      `${protocolVar}: "${protocol}" is not supported; set grpc (the default, as Argo's) or http/protobuf`,
    );
  }
  const samplerName = (get("OTEL_TRACES_SAMPLER") || "parentbased_always_on").toLowerCase();
  if (!SAMPLERS.includes(samplerName))
    throw new SettingsError(
      `OTEL_TRACES_SAMPLER: "${env["OTEL_TRACES_SAMPLER"]}" is not a sampler the plugin knows (${SAMPLERS.join(", ")})`,
    );
  const parentBased = samplerName.startsWith("parentbased_");
  const kind = samplerName.replace(/^parentbased_/, "") as TracingSettings["sampler"]["kind"];
  let ratio = 1;
  if (kind === "traceidratio" && get("OTEL_TRACES_SAMPLER_ARG") !== "") {
    ratio = Number(get("OTEL_TRACES_SAMPLER_ARG"));
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
      throw new SettingsError(
        `OTEL_TRACES_SAMPLER_ARG: "${env["OTEL_TRACES_SAMPLER_ARG"]}" is not a ratio between 0 and 1`,
      );
  }
  otlpExporterProblems(env);
  const maxQueueSize = wholeNumber(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048);
  const maxExportBatchSize = wholeNumber(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Math.min(512, maxQueueSize));
  if (maxExportBatchSize > maxQueueSize)
    throw new SettingsError(
      `OTEL_BSP_MAX_EXPORT_BATCH_SIZE: ${maxExportBatchSize} is more than OTEL_BSP_MAX_QUEUE_SIZE (${maxQueueSize})`,
    );
  const batch = {
    maxQueueSize,
    maxExportBatchSize,
    scheduledDelayMillis: wholeNumber(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, 0),
    exportTimeoutMillis: wholeNumber(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000),
  };
  const limitVar = env["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"]?.trim()
    ? "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"
    : "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
  return {
    protocol,
    sampler: { kind, parentBased, ratio },
    batch,
    attributeValueLengthLimit: wholeNumber(env, limitVar, 1024),
  };
}

/** A TCP port number, or undefined when the variable is unset or empty. */
/** A TCP port; 0 lets the system choose one (the ready line says which). */
function port(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = (env[name] ?? "").trim();
  if (v === "") return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 65535)
    throw new SettingsError(`${name}: "${env[name]}" is not a TCP port (0-65535; 0: any free one)`);
  return Number(v);
}

function ipAddress(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = (env[name] ?? "").trim();
  if (v === "") return undefined;
  if (isIP(v) === 0)
    throw new SettingsError(`${name}: "${env[name]}" is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::)`);
  return v;
}

/** A Kubernetes pod: the cluster's service environment, or a mounted service-account folder. */
export function inKubernetesPod(env: NodeJS.ProcessEnv): boolean {
  return (
    Boolean(env["KUBERNETES_SERVICE_HOST"]) ||
    existsSync(env["ARGO_S3_PLUGIN_SERVICEACCOUNT_DIR"] || DEFAULT_SERVICEACCOUNT_DIR)
  );
}

/**
 * Shared (the argo-server sidecar) unless told otherwise or plainly in a
 * workflow's pod. Argo's controller gives every executor container, the
 * plugin's included, the workflow's name and uid; a plugin in a pod without
 * them (a sidecar added to argo-server by hand, from Argo's docs) serves every
 * UI user with argo-server's identity and must not act for any one of them.
 * Outside Kubernetes (a laptop, the demo, tests) nothing changes.
 */
function sharedMode(env: NodeJS.ProcessEnv, inPod: boolean): { shared: boolean; sharedBecause: string } {
  const explicit = (env["ARGO_S3_PLUGIN_SHARED"] ?? "").trim();
  if (explicit !== "")
    return { shared: bool(env, "ARGO_S3_PLUGIN_SHARED"), sharedBecause: `ARGO_S3_PLUGIN_SHARED=${explicit}` };
  if (!inPod) return { shared: false, sharedBecause: "not in a Kubernetes pod" };
  if (env["ARGO_WORKFLOW_NAME"] && env["ARGO_WORKFLOW_UID"])
    return { shared: false, sharedBecause: "in a workflow's pod (ARGO_WORKFLOW_NAME, ARGO_WORKFLOW_UID)" };
  return {
    shared: true,
    sharedBecause:
      "in a Kubernetes pod without a workflow's environment (ARGO_WORKFLOW_NAME, ARGO_WORKFLOW_UID): taken for the shared argo-server sidecar",
  };
}

const CLIENT_GONE = "ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS";

/**
 * How long after its saving client is gone a workflow pod's plugin leaves: 300 s there by
 * default, off elsewhere; the shared sidecar serves every UI user and never leaves by itself.
 */
function clientGone(env: NodeJS.ProcessEnv, inPod: boolean, shared: boolean): number | undefined {
  const inWorkflowPod = inPod && !!env["ARGO_WORKFLOW_NAME"] && !!env["ARGO_WORKFLOW_UID"];
  const ms = seconds(env, CLIENT_GONE, inWorkflowPod && !shared ? 300_000 : 0);
  // Node's timers take at most 2^31-1 ms and fire at once past it.
  if (ms > 2 ** 31 - 1) throw new SettingsError(`${CLIENT_GONE}: at most 2147483 seconds (24 days); 0 turns it off`);
  if (ms > 0 && shared)
    throw new SettingsError(
      `${CLIENT_GONE}: the shared argo-server sidecar serves every UI user and must not leave when one goes; unset it there (or set 0)`,
    );
  return ms > 0 ? ms : undefined;
}

/** Argo's per-container folder for the exit code and the stop signal (common.VarRunArgoPath + "/ctr"). */
function argoSignalDir(env: NodeJS.ProcessEnv, shared: boolean): string | undefined {
  const name = env["ARGO_CONTAINER_NAME"];
  if (shared || !name || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) return undefined;
  return `/var/run/argo/ctr/${name}`;
}

/** Strict octal file mode: 3 or 4 octal digits, nothing else. */
export function parseSocketMode(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^0?[0-7]{3}$/.test(v))
    throw new SettingsError(`ARGO_S3_PLUGIN_SOCKET_MODE: "${v}" is not an octal file mode such as 660 or 666`);
  return Number.parseInt(v, 8);
}

/**
 * The listening descriptor the launcher left, when it was bound for this very
 * path; anything else (another path, a malformed number) is not ours to use.
 */
function inheritedSocket(env: NodeJS.ProcessEnv, socketPath: string): number | undefined {
  const fd = env["ARGO_S3_PLUGIN_LISTEN_FD"];
  if (fd === undefined || env["ARGO_S3_PLUGIN_LISTEN_PATH"] !== socketPath || !/^[3-9]$/.test(fd)) return undefined;
  return Number(fd);
}

/**
 * The memory limit of this process's cgroup (v2 memory.max, else v1
 * memory.limit_in_bytes), the smallest along its path; undefined when unlimited.
 */
export function cgroupMemoryLimit(read: (path: string) => string | undefined = tryRead): number | undefined {
  const self = read("/proc/self/cgroup") ?? "";
  let limit: number | undefined;
  const consider = (raw: string | undefined) => {
    const n = raw === undefined || raw.trim() === "max" ? NaN : Number(raw.trim());
    // v1 reports "unlimited" as a number near 2^63.
    if (Number.isFinite(n) && n > 0 && n < 2 ** 60) limit = limit === undefined ? n : Math.min(limit, n);
  };
  for (const line of self.split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    const v2 = controllers === "";
    const v1 = controllers!.split(",").includes("memory");
    if (!v1 && !v2) continue;
    // In a container the cgroup namespace makes the own group the root; outside one, its ancestors count too.
    const parts = path.split("/").filter(Boolean);
    for (let i = parts.length; i >= 0; i--) {
      const dir = i === 0 ? "" : `/${parts.slice(0, i).join("/")}`;
      consider(
        v2 ? read(`/sys/fs/cgroup${dir}/memory.max`) : read(`/sys/fs/cgroup/memory${dir}/memory.limit_in_bytes`),
      );
    }
  }
  return limit;
}

function tryRead(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Memory the process needs besides the buffer budget: Node and its heap at
 * rest, plus per running transfer gRPC frames, HTTP sockets and SDK state.
 * Measured with the 64-way load test in a memory cgroup (README, "Memory").
 */
export const BASE_BYTES = 80 * MiB;
export const PER_TRANSFER_BYTES = 6 * MiB;
const DEFAULT_BUFFER = 96 * MiB;
const DEFAULT_TRANSFERS = 64;

/** Budget and concurrency for a memory limit: a third of what is left after the base goes to buffers. */
export function sizeForMemory(limitBytes: number | undefined): { bufferBytes: number; maxConcurrentTransfers: number } {
  if (limitBytes === undefined) return { bufferBytes: DEFAULT_BUFFER, maxConcurrentTransfers: DEFAULT_TRANSFERS };
  const spare = Math.max(0, limitBytes - BASE_BYTES);
  const bufferBytes = Math.min(DEFAULT_BUFFER, Math.max(8 * MiB, Math.floor(spare / 3 / MiB) * MiB));
  const maxConcurrentTransfers = Math.min(
    DEFAULT_TRANSFERS,
    Math.max(2, Math.floor((spare - bufferBytes) / PER_TRANSFER_BYTES)),
  );
  return { bufferBytes, maxConcurrentTransfers };
}

export function readSettings(
  args: string[],
  env: NodeJS.ProcessEnv,
  memoryLimitBytes = cgroupMemoryLimit(),
  inPod = inKubernetesPod(env),
): Settings | { help: true } | { version: true } {
  const parsed = parseArgs(args);
  if ("version" in parsed || parsed.help) return parsed;
  const logLevel =
    parsed.logLevel !== undefined
      ? logLevelOf("--loglevel", parsed.logLevel)
      : env["LOG_LEVEL"]
        ? logLevelOf("LOG_LEVEL", env["LOG_LEVEL"])
        : "info";
  const sized = sizeForMemory(memoryLimitBytes);
  let bufferBytes = sized.bufferBytes;
  let bufferSource: Settings["bufferSource"] = memoryLimitBytes === undefined ? "default" : "memory limit";
  try {
    if (env["ARGO_S3_PLUGIN_BUFFER_MIB"]) {
      bufferBytes = bufferBudgetFromEnv(env);
      bufferSource = "ARGO_S3_PLUGIN_BUFFER_MIB";
    }
    const shared = sharedMode(env, inPod);
    return {
      socketPath: parsed.socketPath,
      logLevel,
      ignoredArgs: parsed.ignoredArgs,
      graceMs: seconds(env, "ARGO_S3_PLUGIN_GRACE_SECONDS", 25_000),
      socketMode: parseSocketMode(env["ARGO_S3_PLUGIN_SOCKET_MODE"]),
      listenFd: inheritedSocket(env, parsed.socketPath),
      progressIntervalMs: seconds(env, "ARGO_S3_PLUGIN_PROGRESS_SECONDS", 10_000, 1),
      streamIdleMs: seconds(env, "ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS", 60_000, 1),
      bufferBytes,
      bufferSource,
      memoryLimitBytes,
      maxConcurrentTransfers: sized.maxConcurrentTransfers,
      lateUploadWatchMs: seconds(env, "ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS", 120_000),
      leaveWhenClientGoneMs: clientGone(env, inPod, shared.shared),
      argoSignalDir: argoSignalDir(env, shared.shared),
      ...shared,
      sharedListingMs: seconds(env, "ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS", 60_000, 1),
      allowedRoles: list(env["ARGO_S3_PLUGIN_ALLOWED_ROLES"]),
      metricsPort: port(env, "ARGO_S3_PLUGIN_METRICS_PORT"),
      metricsAddress: ipAddress(env, "ARGO_S3_PLUGIN_METRICS_ADDRESS"),
      tracing: tracing(env),
      allowedSecrets: list(env["ARGO_S3_PLUGIN_ALLOWED_SECRETS"]).map(allowedSecret),
      allowedEndpoints: list(env["ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS"]).map((e) => e.toLowerCase()),
      operatorEndpoints: list(env["ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS"]).map((e) => e.toLowerCase()),
    };
  } catch (e) {
    if (e instanceof SettingsError) throw e;
    throw new SettingsError((e as Error).message);
  }
}
