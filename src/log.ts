// The process logger. JSON lines by default (what log collectors want), made
// readable by pino-pretty when stdout is a terminal; level from the settings (LOG_LEVEL or --loglevel). Nothing secret is ever passed to it: log calls carry bucket,
// key, endpoint and sizes only. The redact list is a second line of defence
// for SDK objects that might be logged by mistake.
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

export function createLogger(destination?: NodeJS.WritableStream, level = "info"): Logger {
  const opts = {
    level,
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
  if (destination) return pino(opts, destination as pino.DestinationStream);
  if (process.stdout.isTTY) return pino(opts, pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,plugin" }));
  return pino(opts);
}
