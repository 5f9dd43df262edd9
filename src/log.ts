// The process logger. JSON lines by default (what log collectors want); level
// from LOG_LEVEL. Nothing secret is ever passed to it: log calls carry bucket,
// key, endpoint and sizes only. The redact list is a second line of defence
// for SDK objects that might be logged by mistake.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(destination?: NodeJS.WritableStream): Logger {
  const opts = {
    level: process.env["LOG_LEVEL"] ?? "info",
    base: { plugin: "argo-s3-artifact-plugin" },
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
  return destination ? pino(opts, destination as pino.DestinationStream) : pino(opts);
}
