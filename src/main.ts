#!/usr/bin/env node
// Process entry: `node dist/main.js <socket-path> [executor args...]`. Argo
// appends the socket path to the image's ENTRYPOINT, and plugin containers
// inherit the executor's args after it. SIGTERM (pod stop) ends with exit 0.
import { ArtifactService } from "./artifacts/service.js";
import { type Logger, createLogger } from "./log.js";
import { S3TargetFactory } from "./s3/client.js";
import { KubeSecretSource, SharedModeSecrets } from "./s3/kube-secrets.js";
import { type Settings, SettingsError, readSettings } from "./settings.js";
import { BufferBudget } from "./transfer/buffer-budget.js";
import { TransferEngine } from "./transfer/engine.js";
import { type LateUploadEvent, LateUploadWatch } from "./transfer/late-uploads.js";
import { PluginServer } from "./wire/server.js";
import { VERSION } from "./version.js";
import type { Metrics } from "./metrics.js";
import { SocketInUseError } from "./wire/socket.js";

const USAGE = `usage: argo-s3-artifact-plugin <socket-path> [--loglevel LEVEL] [other args are ignored]
       argo-s3-artifact-plugin --version | --help

Serves Argo's ArtifactService for S3 on a unix socket, e.g.
  node dist/main.js /tmp/artifact-plugins/s3/socket
Argo appends the executor's args after the socket path; --loglevel is honoured,
anything else is ignored with one warning.

environment:
  LOG_LEVEL                        fatal|error|warn|info|debug|trace|silent (default info)
  ARGO_S3_PLUGIN_GRACE_SECONDS     shutdown grace for in-flight RPCs (default 25)
  ARGO_S3_PLUGIN_SOCKET_MODE       octal socket file mode (default: 666 in a folder any uid
                                   may write, such as Argo's emptyDir; else 660)
  ARGO_S3_PLUGIN_PROGRESS_SECONDS  progress log interval of long transfers (default 10)
  ARGO_S3_PLUGIN_BUFFER_MIB        memory for transfer buffers, all RPCs together (default:
                                   from the container's memory limit, at most 96)
  ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS
                                   an OpenStream client taking no data, or a SaveStream client
                                   sending none, for this long is cut off (default 60)
  ARGO_S3_PLUGIN_SHARED            true in the shared argo-server sidecar: no Kubernetes secret or
                                   role a workflow names is used unless listed below, no loopback
                                   endpoint (default: true in a Kubernetes pod without a workflow's
                                   ARGO_WORKFLOW_NAME and ARGO_WORKFLOW_UID, else false)
  ARGO_S3_PLUGIN_ALLOWED_SECRETS   secrets the shared sidecar may read: "name" or "name/key", comma-separated
  ARGO_S3_PLUGIN_ALLOWED_ROLES     roles (roleARN) the shared sidecar may assume, comma-separated
  ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS endpoints (host or host:port) configurations may use; empty: any
                                   but link-local / metadata addresses, which are always refused
                                   (and loopback in the shared sidecar, unless listed here)
  ARGO_S3_PLUGIN_METRICS_PORT      serve Prometheus metrics on this TCP port at /metrics (default off)
  ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS
                                   how long a key is watched for an upload created after an
                                   unanswered CreateMultipartUpload (default 120, 0 = off)
`;

const MiB = 1024 * 1024;

/** What the late-upload watch did, in the log (see transfer/late-uploads.ts). */
function logLateUpload(logger: Logger): (e: LateUploadEvent) => void {
  return (e) => {
    const { event, ...fields } = e;
    if (event === "aborted") logger.warn(fields, "aborted a multipart upload the store created after its CreateMultipartUpload had gone unanswered");
    else logger.warn(fields, "could not check for a multipart upload created after an unanswered CreateMultipartUpload; a lifecycle rule has to reclaim it if there is one");
  };
}

async function main(argv: string[]): Promise<number> {
  let settings: Settings;
  try {
    const read = readSettings(argv.slice(2), process.env);
    if ("help" in read) {
      process.stdout.write(USAGE);
      return 0;
    }
    if ("version" in read) {
      process.stdout.write(`argo-s3-artifact-plugin ${VERSION}\n`);
      return 0;
    }
    settings = read;
  } catch (e) {
    if (!(e instanceof SettingsError)) throw e;
    process.stderr.write(`argo-s3-artifact-plugin: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  const { socketPath } = settings;
  const logger = createLogger(undefined, settings.logLevel, process.env);
  // Node's own warnings (the AWS SDK's multi-line NodeVersionSupportWarning on old Node) as one JSON line, not raw stderr text.
  process.removeAllListeners("warning");
  process.on("warning", (w) => logger.warn({ warning: w.name, detail: w.message.replace(/\s+/g, " ").trim() }, "node warning"));
  if (settings.ignoredArgs.length > 0) logger.warn({ ignoredArgs: settings.ignoredArgs }, "ignoring arguments after the socket path (Argo passes the executor's args to plugins)");
  const kubeSecrets = new KubeSecretSource(process.env);
  const secrets = settings.shared ? new SharedModeSecrets(kubeSecrets, settings.allowedSecrets) : kubeSecrets;
  // LOG_LEVEL=debug: one line per S3 request (operation, bucket, key, status, attempts, time).
  const debug = logger.isLevelEnabled("debug") ? (fields: Record<string, unknown>) => logger.debug(fields, "s3 request") : undefined;
  const budget = new BufferBudget(settings.bufferBytes);
  // ARGO_S3_PLUGIN_METRICS_PORT: Prometheus metrics; they read the server's pools once it exists.
  let server: PluginServer | undefined;
  // Loaded only when asked for: prom-client costs start-up time every pod would pay.
  const metrics: Metrics | undefined =
    settings.metricsPort === undefined
      ? undefined
      : new (await import("./metrics.js")).Metrics({ budget: () => ({ inUse: budget.inUse, limit: budget.limitBytes }), slots: () => server?.slotStats() ?? [], tenants: () => server?.tenantsHolding() ?? 0 });
  // Each S3 request goes to whichever of the two wants it (none: no per-request work at all).
  const sinks = [debug, metrics && ((fields: Record<string, unknown>) => metrics.s3Request(fields))].filter((f) => f !== undefined);
  const requestLog =
    sinks.length === 0
      ? undefined
      : (fields: Record<string, unknown>) => {
          for (const sink of sinks) sink(fields);
        };
  const engine = new TransferEngine(budget, new LateUploadWatch(settings.lateUploadWatchMs, logLateUpload(logger)));
  const service = new ArtifactService(new S3TargetFactory(secrets, {
      env: process.env,
      endpoints: { allowed: settings.allowedEndpoints, refuseLoopback: settings.shared },
      roles: settings.shared ? settings.allowedRoles : undefined,
      clamp: settings.shared ? { requestTimeoutMs: 60_000, maxAttempts: 3 } : undefined,
      requestLog,
    }), engine);
  server = new PluginServer({
    socketPath,
    service,
    logger,
    socketMode: settings.socketMode,
    progressIntervalMs: settings.progressIntervalMs,
    streamIdleMs: settings.streamIdleMs,
    maxConcurrentTransfers: settings.maxConcurrentTransfers,
    maxConcurrentListings: settings.shared ? 4 : 8,
    perTenantLimits: settings.shared,
    ...(metrics ? { onRpc: metrics.rpc.bind(metrics) } : {}),
  });
  const served = server;
  // Signals are handled from here on: a pod stopped while the plugin starts still exits 0.
  const { graceMs } = settings;
  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, graceMs }, "shutting down");
      served.shutdown(graceMs).then(
        ({ cancelled }) => {
          logger.info({ cancelled }, "stopped");
          resolve(0);
        },
        (e: unknown) => {
          logger.error({ error: (e as Error).message }, "shutdown failed");
          resolve(0);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
  try {
    await served.listen();
  } catch (e) {
    logger.fatal({ socketPath, error: (e as Error).message }, e instanceof SocketInUseError ? "socket in use" : "cannot listen on the socket");
    return stopping ? stopped : 1;
  }
  if (metrics && settings.metricsPort !== undefined) {
    try {
      await metrics.serve(settings.metricsPort, (e) => logger.warn({ error: e.message }, "metrics server error"));
    } catch (e) {
      logger.fatal({ metricsPort: settings.metricsPort, error: (e as Error).message }, "cannot serve metrics on ARGO_S3_PLUGIN_METRICS_PORT; free the port or choose another");
      await served.shutdown(0);
      return 1;
    }
  }
  logger.info(
    {
      version: VERSION,
      metricsPort: settings.metricsPort,
      socketPath,
      pid: process.pid,
      node: process.version,
      memoryLimitMiB: settings.memoryLimitBytes === undefined ? "none" : Math.round(settings.memoryLimitBytes / MiB),
      bufferMiB: Math.round(settings.bufferBytes / MiB),
      bufferFrom: settings.bufferSource,
      maxConcurrentTransfers: settings.maxConcurrentTransfers,
      shared: settings.shared,
      sharedBecause: settings.sharedBecause,
      allowedSecrets: settings.shared ? settings.allowedSecrets.length : undefined,
      allowedRoles: settings.shared ? settings.allowedRoles.length : undefined,
      allowedEndpoints: settings.allowedEndpoints.length > 0 ? settings.allowedEndpoints : undefined,
    },
    "ready",
  );
  return stopped;
}

main(process.argv).then(
  (code) => {
    // Let pino flush, then leave even if sockets linger.
    setTimeout(() => process.exit(code), 50).unref();
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`fatal: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
