#!/usr/bin/env node
// Process entry: `node dist/main.js <socket-path>`. Argo appends the socket
// path to the image's ENTRYPOINT; SIGTERM (pod stop) must end with exit 0.
import { ArtifactService } from "./artifacts/service.js";
import { createLogger } from "./log.js";
import { lateUploadWatchFromEnv } from "./transfer/late-uploads.js";
import { S3TargetFactory } from "./s3/client.js";
import { KubeSecretSource } from "./s3/kube-secrets.js";
import { bufferBudgetFromEnv } from "./transfer/buffer-budget.js";
import { PluginServer } from "./wire/server.js";

const USAGE = `usage: argo-s3-artifact-plugin <socket-path>

Serves Argo's ArtifactService for S3 on a unix socket, e.g.
  node dist/main.js /tmp/artifact-plugins/s3/socket

environment:
  LOG_LEVEL                        pino level (default info)
  ARGO_S3_PLUGIN_GRACE_SECONDS     shutdown grace for in-flight RPCs (default 25)
  ARGO_S3_PLUGIN_SOCKET_MODE       octal socket file mode (default 660)
  ARGO_S3_PLUGIN_PROGRESS_SECONDS  progress log interval of long transfers (default 10)
  ARGO_S3_PLUGIN_BUFFER_MIB        memory for transfer buffers, all RPCs together (default 96)
  ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS
                                   an OpenStream client taking no data, or a SaveStream client
                                   sending none, for this long is cut off (default 60)
  ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS
                                   how long a key is watched for an upload created after an
                                   unanswered CreateMultipartUpload (default 120, 0 = off)
`;

function parseOctal(v: string | undefined, fallback: number): number {
  if (!v) return fallback;
  const n = Number.parseInt(v, 8);
  if (!Number.isInteger(n) || n < 0 || n > 0o777) throw new Error(`ARGO_S3_PLUGIN_SOCKET_MODE: "${v}" is not an octal file mode`);
  return n;
}

function parseSeconds(name: string, v: string | undefined, fallbackMs: number, min = 0): number {
  if (!v) return fallbackMs;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}: "${v}" is not a number of seconds${min > 0 ? ` ≥ ${min}` : ""}`);
  return n * 1000;
}

async function main(argv: string[]): Promise<number> {
  const args = argv.slice(2);
  if (args.length !== 1 || args[0] === "" || args[0]!.startsWith("-")) {
    process.stderr.write(USAGE);
    return 2;
  }
  const socketPath = args[0]!;
  const logger = createLogger();
  let graceMs: number, socketMode: number, streamIdleMs: number;
  try {
    graceMs = parseSeconds("ARGO_S3_PLUGIN_GRACE_SECONDS", process.env["ARGO_S3_PLUGIN_GRACE_SECONDS"], 25_000);
    streamIdleMs = parseSeconds("ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS", process.env["ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS"], 60_000, 1);
    socketMode = parseOctal(process.env["ARGO_S3_PLUGIN_SOCKET_MODE"], 0o660);
    bufferBudgetFromEnv();
    lateUploadWatchFromEnv();
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const service = new ArtifactService(new S3TargetFactory(new KubeSecretSource()));
  const progressSeconds = Number(process.env["ARGO_S3_PLUGIN_PROGRESS_SECONDS"] || 10);
  const progressIntervalMs = Number.isFinite(progressSeconds) && progressSeconds > 0 ? progressSeconds * 1000 : 10_000;
  const server = new PluginServer({ socketPath, service, logger, socketMode, progressIntervalMs, streamIdleMs });
  try {
    await server.listen();
  } catch (e) {
    logger.fatal({ socketPath, error: (e as Error).message }, "cannot listen on the socket");
    return 1;
  }
  logger.info({ socketPath, pid: process.pid, node: process.version }, "ready");

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, graceMs }, "shutting down");
      server.shutdown(graceMs).then(
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
