// What is behind the socket, built once it is bound (bin/plugin.ts): the S3 layer
// with its credentials and endpoint rules, the transfer engine and its budget,
// the artifact service, and the metrics and traces when asked for. Kept out of main's
// imports so that loading them (the AWS SDK most of all) does not hold back
// the socket Argo's client is waiting for.
import type { SharedPolicy } from "./admission/shared-policy.js";
import { ArtifactService } from "./artifacts/service.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { S3TargetFactory } from "./s3/targets.js";
import { onS3Request } from "./s3/events.js";
import { KubeSecretSource, SharedModeSecrets } from "./s3/kube-secrets.js";
import type { Settings } from "./settings.js";
import type { Tracing } from "./tracing.js";
import { BufferBudget } from "./transfer/buffer-budget.js";
import { TransferEngine } from "./transfer/engine.js";
import { type LateUploadEvent, LateUploadWatch } from "./transfer/late-uploads.js";
import { VERSION } from "./version.js";
import type { PluginServer } from "./wire/server.js";

/** What the late-upload watch did, in the log (see transfer/late-uploads.ts). */
function logLateUpload(logger: Logger): (e: LateUploadEvent) => void {
  return (e) => {
    const { event, ...fields } = e;
    if (event === "aborted")
      logger.warn(
        fields,
        "aborted a multipart upload the store created after its CreateMultipartUpload had gone unanswered",
      );
    else
      logger.warn(
        fields,
        "could not check for a multipart upload created after an unanswered CreateMultipartUpload; a lifecycle rule has to reclaim it if there is one",
      );
  };
}

export interface Built {
  service: ArtifactService;
  metrics: Metrics | undefined;
  tracing: Tracing | undefined;
}

export async function buildServices(
  settings: Settings,
  policy: SharedPolicy,
  logger: Logger,
  server: PluginServer,
  env: NodeJS.ProcessEnv,
): Promise<Built> {
  const kubeSecrets = new KubeSecretSource(env);
  const secrets = policy.allowedSecrets ? new SharedModeSecrets(kubeSecrets, policy.allowedSecrets) : kubeSecrets;
  const budget = new BufferBudget(settings.bufferBytes);
  // ARGO_S3_PLUGIN_METRICS_PORT: Prometheus metrics. Loaded only when asked for: prom-client costs start-up time every pod would pay.
  const metrics: Metrics | undefined =
    settings.metricsPort === undefined
      ? undefined
      : new (await import("./metrics.js")).Metrics({
          budget: () => ({ inUse: budget.inUse, limit: budget.limitBytes, waiting: budget.waiting }),
          slots: () => server.slotStats(),
          tenants: () => server.tenantsHolding(),
        });
  // OTEL_*: OpenTelemetry traces, loaded only then, like the metrics.
  const tracing: Tracing | undefined =
    settings.tracing === undefined
      ? undefined
      : new (await import("./tracing.js")).Tracing(settings.tracing, env, VERSION, logger);
  // Each ended S3 request (s3/events.ts) goes to whichever of the three wants it; with none
  // subscribed the S3 layer does no per-request work at all. LOG_LEVEL=debug: one line per request.
  if (logger.isLevelEnabled("debug")) onS3Request((e) => logger.debug(e, "s3 request"));
  if (metrics) onS3Request((e) => metrics.s3Request(e));
  if (tracing) onS3Request((e) => tracing.s3Request(e));
  const engine = new TransferEngine(budget, new LateUploadWatch(settings.lateUploadWatchMs, logLateUpload(logger)));
  const service = new ArtifactService(
    new S3TargetFactory(secrets, {
      env,
      endpoints: policy.endpoints,
      roles: policy.allowedRoles,
      clamp: policy.clamp,
    }),
    engine,
  );
  return { service, metrics, tracing };
}
