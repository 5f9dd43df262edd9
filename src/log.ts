// The process logger. JSON lines by default (what log collectors want), in
// the shape of Argo's own (level names, RFC 3339 times, the workflow's pod
// fields), made readable by pino-pretty when stdout is a terminal; level from
// the settings (LOG_LEVEL or --loglevel). Nothing secret is ever passed to it: log calls carry bucket,
// key, endpoint and sizes only. The redact list is a second line of defence
// for SDK objects that might be logged by mistake.
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

/**
 * The pod fields Argo's controller gives every executor container, the
 * plugin's included: one log query then covers the step's Argo lines and the
 * plugin's. Absent outside a workflow pod (argo-server, a laptop).
 */
function argoFields(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [field, name] of [
    ["workflow", "ARGO_WORKFLOW_NAME"],
    ["pod", "ARGO_POD_NAME"],
    ["nodeId", "ARGO_NODE_ID"],
    ["container", "ARGO_CONTAINER_NAME"],
  ] as const) {
    const v = env[name];
    if (v) out[field] = v;
  }
  return out;
}

export function createLogger(destination?: NodeJS.WritableStream, level = "info", env: NodeJS.ProcessEnv = {}): Logger {
  const opts = {
    level,
    base: { plugin: "argo-s3-artifact-plugin", ...argoFields(env) },

    redact: {
      paths: [
        "*.secretAccessKey",
        "*.SecretAccessKey",
        "*.sessionToken",
        "*.SessionToken",
        "*.SSECustomerKey",
        "*.authorization",
        "*.Authorization",
        "*.credentials",
      ],
      censor: "[redacted]",
    },
  };
  // As Argo's own JSON logs (slog): "level":"INFO", "time" in RFC 3339.
  const json = {
    ...opts,
    formatters: { level: (label: string) => ({ level: label.toUpperCase() }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (destination) return pino(json, destination as pino.DestinationStream);
  if (process.stdout.isTTY)
    return pino(opts, pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,plugin" }));
  return pino(json);
}
