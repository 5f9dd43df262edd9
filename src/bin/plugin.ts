#!/usr/bin/env node
// Process entry: `node dist/main.cjs <socket-path> [executor args...]`. Argo
// appends the socket path to the image's ENTRYPOINT, and plugin containers
// inherit the executor's args after it. SIGTERM (pod stop) ends with exit 0.
//
// Start-up is on the critical path of every step that moves an artifact: only
// what binds the socket is imported here; services.ts (the AWS SDK, the
// transfer engine) is loaded once the socket is there.
import type { AddressInfo } from "node:net";
import { type SharedPolicy, sharedPolicy } from "../admission/shared-policy.js";
import { whenBuilt } from "../artifacts/ops.js";
import { type Logger, createLogger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { Built } from "../services.js";
import { type Settings, SettingsError, readSettings } from "../settings.js";
import { watchSignalFile } from "../util/signal-file.js";
import { VERSION } from "../version.js";
import { logRpcLine, onRpcEnded } from "../wire/events.js";
import { PluginServer } from "../wire/server.js";
import { SocketInUseError } from "../wire/socket.js";

const USAGE = `usage: argo-s3-artifact-plugin <socket-path> [--loglevel LEVEL] [other args are ignored]
       argo-s3-artifact-plugin --version | --help

Serves Argo's ArtifactService for S3 on a unix socket, e.g.
  node dist/main.cjs /tmp/artifact-plugins/s3/socket
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
  ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS
                                   in a workflow's pod, once a Save was served: leave when no client
                                   has been connected for this long (its wait container died before
                                   stopping the sidecar); 0: never (default 300 there, else 0)
  ARGO_S3_PLUGIN_SHARED            true in the shared argo-server sidecar: no Kubernetes secret or
                                   role a workflow names is used unless listed below, no loopback
                                   endpoint (default: true in a Kubernetes pod without a workflow's
                                   ARGO_WORKFLOW_NAME and ARGO_WORKFLOW_UID, else false)
  ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS
                                   in the shared sidecar, a whole ListObjects or IsDirectory (every
                                   page) ends within this (default 60)
  ARGO_S3_PLUGIN_ALLOWED_SECRETS   secrets the shared sidecar may read: "name" or "name/key", comma-separated
  ARGO_S3_PLUGIN_ALLOWED_ROLES     roles (roleARN) the shared sidecar may assume, comma-separated
  ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS endpoints (host or host:port) configurations may use; empty: any
                                   but link-local / metadata addresses, which are always refused
                                   (and loopback in the shared sidecar, unless listed here)
  ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS
                                   your own stores (host or host:port); in the shared sidecar the
                                   calls to every other endpoint together hold at most half of the
                                   slots and of the buffer budget (default: none named, no such cap)
  ARGO_S3_PLUGIN_METRICS_PORT      serve Prometheus metrics on this TCP port at /metrics (default off;
                                   0: any free port, named in the ready line)
  ARGO_S3_PLUGIN_METRICS_ADDRESS   the IP address the metrics port listens on (default: all, as
                                   Prometheus scrapes the pod's IP; 127.0.0.1 for a scraper in the pod)
  OTEL_EXPORTER_OTLP_ENDPOINT      OpenTelemetry traces over OTLP (default off); also the other
                                   standard OTEL_* variables: _PROTOCOL (grpc, http/protobuf),
                                   _HEADERS, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, ...
  ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS
                                   how long a key is watched for an upload created after an
                                   unanswered CreateMultipartUpload (default 120, 0 = off)
`;

const MiB = 1024 * 1024;

/** The settings, or the exit code when the command line asked for help or the version, or is wrong. */
function settingsOrExit(argv: string[]): Settings | number {
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
    return read;
  } catch (e) {
    if (!(e instanceof SettingsError)) throw e;
    process.stderr.write(`argo-s3-artifact-plugin: ${e.message}\n\n${USAGE}`);
    return 2;
  }
}

/** The services behind the socket, built after it is bound; calls that arrive before wait for them. */
function deferredServices() {
  let built!: (services: Built) => void;
  let failed!: (e: unknown) => void;
  const services = new Promise<Built>((resolve, reject) => ((built = resolve), (failed = reject)));
  const service = services.then((b) => b.service);
  for (const p of [services, service]) p.catch(() => undefined);
  return { services, service, built, failed };
}

/**
 * SIGTERM and SIGINT stop the server within the grace (the last spans sent, bounded), then the
 * process exits 0; `stopped` resolves with that code, `stopping()` says whether a stop began.
 */
function stopOnSignals(
  served: PluginServer,
  settings: Settings,
  services: Promise<Built>,
  logger: Logger,
): { stopped: Promise<number>; stopping: () => boolean; stop: (reason: string) => void } {
  const { graceMs } = settings;
  let stopping = false;
  let stop: (reason: string) => void = () => undefined;
  const stopped = new Promise<number>((resolve) => {
    stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, graceMs }, "shutting down");
      served.shutdown(graceMs).then(
        async ({ cancelled }) => {
          // The last spans go out before the pod does (bounded: a collector that hangs does not hold the exit).
          if (settings.tracing)
            await Promise.race([
              services.then((b) => b.tracing?.shutdown()).catch(() => undefined),
              new Promise((r) => setTimeout(r, 5_000).unref()),
            ]);
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
  return { stopped, stopping: () => stopping, stop: (reason) => stop(reason) };
}

/** The metrics port serving (port 0: one of the system's choosing, said in the ready line). */
async function serveMetrics(metrics: Metrics, settings: Settings, logger: Logger): Promise<number> {
  const server = await metrics.serve(settings.metricsPort ?? 0, settings.metricsAddress, (e) =>
    logger.warn({ error: e.message }, "metrics server error"),
  );
  return (server.address() as AddressInfo).port;
}

/** The ready line's fields: what this process serves and with what limits. */
function readyLine(settings: Settings, policy: SharedPolicy, metricsPort: number | undefined): Record<string, unknown> {
  return {
    version: VERSION,
    metricsPort,
    metricsAddress: settings.metricsPort === undefined ? undefined : (settings.metricsAddress ?? "all"),
    tracing: settings.tracing ? `otlp ${settings.tracing.protocol}` : undefined,
    socketPath: settings.socketPath,
    // "launcher": bound by the image's entrypoint before Node started (launcher/launch.c).
    socketFrom: settings.listenFd === undefined ? "plugin" : "launcher",
    pid: process.pid,
    node: process.version,
    memoryLimitMiB: settings.memoryLimitBytes === undefined ? "none" : Math.round(settings.memoryLimitBytes / MiB),
    bufferMiB: Math.round(settings.bufferBytes / MiB),
    bufferFrom: settings.bufferSource,
    maxConcurrentTransfers: settings.maxConcurrentTransfers,
    shared: policy.shared,
    sharedBecause: settings.sharedBecause,
    allowedSecrets: policy.allowedSecrets?.length,
    allowedRoles: policy.allowedRoles?.length,
    allowedEndpoints: settings.allowedEndpoints.length > 0 ? settings.allowedEndpoints : undefined,
  };
}

/** Node's own warnings (the AWS SDK's multi-line NodeVersionSupportWarning on old Node) as one JSON line, not raw stderr text. */
function logNodeWarnings(logger: Logger): void {
  process.removeAllListeners("warning");
  process.on("warning", (w) =>
    logger.warn({ warning: w.name, detail: w.message.replace(/\s+/g, " ").trim() }, "node warning"),
  );
}

function pluginServer(
  settings: Settings,
  policy: SharedPolicy,
  logger: Logger,
  deferred: ReturnType<typeof deferredServices>,
  leave: () => void,
) {
  const { services } = deferred;
  return new PluginServer({
    socketPath: settings.socketPath,
    service: whenBuilt(deferred.service),
    tracer: settings.tracing
      ? { start: async (method, metadata) => (await services).tracing?.start(method, metadata) }
      : undefined,
    logger,
    socketMode: settings.socketMode,
    listenFd: settings.listenFd,
    progressIntervalMs: settings.progressIntervalMs,
    streamIdleMs: settings.streamIdleMs,
    maxConcurrentTransfers: settings.maxConcurrentTransfers,
    maxConcurrentListings: policy.maxConcurrentListings,
    shares: policy.sharesOf,
    callDeadlinesMs: policy.callDeadlinesMs,
    leaveWhenClientGone:
      settings.leaveWhenClientGoneMs === undefined ? undefined : { ms: settings.leaveWhenClientGoneMs, leave },
  });
}

async function main(argv: string[]): Promise<number> {
  // The image's uid (8737) has no passwd entry: container runtimes then set HOME=/, but a process
  // started without HOME would have os.homedir() throw inside the AWS SDK's config-file lookup.
  if (!process.env["HOME"]) process.env["HOME"] = "/";
  const settings = settingsOrExit(argv);
  if (typeof settings === "number") return settings;
  const logger = createLogger(undefined, settings.logLevel, process.env);
  logNodeWarnings(logger);
  if (settings.ignoredArgs.length > 0)
    logger.warn(
      { ignoredArgs: settings.ignoredArgs },
      "ignoring arguments after the socket path (Argo passes the executor's args to plugins)",
    );
  const deferred = deferredServices();
  let metrics: Metrics | undefined;
  const policy = sharedPolicy(settings);
  let leave = () => undefined as void;
  const served = pluginServer(settings, policy, logger, deferred, () => leave());
  // The RPCs' ends (wire/events.ts): one log line each, and the metrics once they are built.
  onRpcEnded((e) => logRpcLine(logger, e));
  onRpcEnded((e) => metrics?.rpc(e.method, e.outcome, e.durationMs / 1000, e.bytes));
  // Signals are handled from here on: a pod stopped while the plugin starts still exits 0.
  const { stopped, stopping, stop } = stopOnSignals(served, settings, deferred.services, logger);
  // Argo's stop for this container, read as soon as it is written (util/signal-file.ts).
  if (settings.argoSignalDir)
    watchSignalFile(settings.argoSignalDir, (signal) => {
      if (signal === 9) {
        logger.warn({ signal, signalFile: settings.argoSignalDir }, "Argo asks for SIGKILL: leaving now");
        process.kill(process.pid, "SIGKILL");
      }
      stop(`Argo's signal file (${signal})`);
    });
  // A workflow pod's sidecar whose wait container died before writing the stop (wire/client-gone.ts).
  leave = () => {
    logger.warn(
      { clientGoneSeconds: settings.leaveWhenClientGoneMs! / 1000 },
      "no client connected since the last Save: the wait container is gone without stopping this sidecar; leaving so the pod can end",
    );
    stop("client gone");
  };
  try {
    await served.listen();
  } catch (e) {
    logger.fatal(
      { socketPath: settings.socketPath, error: (e as Error).message },
      e instanceof SocketInUseError ? "socket in use" : "cannot listen on the socket",
    );
    return stopping() ? stopped : 1;
  }
  try {
    const b = await (await import("../services.js")).buildServices(settings, policy, logger, served, process.env);
    metrics = b.metrics;
    deferred.built(b);
  } catch (e) {
    deferred.failed(e);
    logger.fatal({ error: (e as Error).message }, "cannot build the plugin's services");
    await served.shutdown(0);
    return 1;
  }
  // A stop that came while the services were built is under way: nothing more to start.
  if (stopping()) return stopped;
  // Health and reflection (for probes, people and tools; never a reason to stop serving).
  await served.serving();
  let metricsPort = settings.metricsPort;
  if (metrics && metricsPort !== undefined) {
    try {
      metricsPort = await serveMetrics(metrics, settings, logger);
    } catch (e) {
      logger.fatal(
        { metricsPort: settings.metricsPort, error: (e as Error).message },
        "cannot serve metrics on ARGO_S3_PLUGIN_METRICS_PORT; free the port or choose another",
      );
      if (stopping()) return stopped;
      await served.shutdown(0);
      return 1;
    }
  }
  if (stopping()) return stopped;
  logger.info(readyLine(settings, policy, metricsPort), "ready");
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
