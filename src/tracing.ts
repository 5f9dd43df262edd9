// OpenTelemetry traces, when the standard OTEL_* environment asks for them
// (settings.ts): one SERVER span per RPC and one CLIENT span per S3 request
// under it, exported over OTLP by OpenTelemetry's own SDK and exporters.
// Loaded only then (services.ts): a plugin without it loads none of this and
// does no per-call work for it.
//
// The parent of an RPC's span, first found wins:
// - W3C trace context (`traceparent`, `tracestate`) in the call's gRPC
//   metadata, as a client with a W3C propagator sends it;
// - the TRACEPARENT / TRACESTATE environment variables (OpenTelemetry's
//   environment carrier): Argo's controller (v4.1) puts the step's trace
//   context there on every container of a workflow pod, the plugin's
//   included, while its plugin client's otelgrpc handler sends no header
//   (Argo sets no global propagator);
// - none: a new trace.
import {
  type Context,
  DiagLogLevel,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  context,
  diag,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { Logger } from "./log.js";
import type { TracingSettings } from "./settings.js";
import type { S3RequestEnded } from "./s3/events.js";
import type { RpcLog, RpcSpan, RpcTracer } from "./wire/rpc.js";
import { grpcCodeOf } from "./wire/status.js";

const SERVICE = "artifact.ArtifactService";

const getter: TextMapGetter<Record<string, string | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

function sampler(s: TracingSettings["sampler"]): Sampler {
  const root =
    s.kind === "always_on"
      ? new AlwaysOnSampler()
      : s.kind === "always_off"
        ? new AlwaysOffSampler()
        : new TraceIdRatioBasedSampler(s.ratio);
  return s.parentBased ? new ParentBasedSampler({ root }) : root;
}

export class Tracing implements RpcTracer {
  private readonly provider: TracerProvider;
  private readonly limit: number;
  /**
   * In Argo's init container (init-<plugin>), argoexec returns as soon as its
   * last Load is answered and the container's processes are killed, no
   * signal first: a batch still waiting would be lost. There each RPC's spans
   * are sent before its reply.
   */
  private readonly sendBeforeReply: boolean;
  private readonly tracer: Tracer;
  private readonly propagator = new W3CTraceContextPropagator();
  /** The trace context Argo's controller gave the pod (TRACEPARENT), or the root. */
  private readonly podContext: Context;

  constructor(settings: TracingSettings, env: NodeJS.ProcessEnv, version: string, logger: Logger) {
    // The SDK's own troubles (a collector that refuses or cannot be reached) as warnings in the plugin's log.
    diag.setLogger(
      {
        error: (message: string) => logger.warn({ detail: message }, "tracing: export problem"),
        warn: (message: string) => logger.warn({ detail: message }, "tracing: export problem"),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      DiagLogLevel.WARN,
    );
    // Resource: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over these defaults.
    const resource = resourceFromAttributes({
      "service.name": "argo-s3-artifact-plugin",
      "service.version": version,
      ...(env["ARGO_POD_NAME"] ? { "k8s.pod.name": env["ARGO_POD_NAME"] } : {}),
      ...(env["ARGO_WORKFLOW_NAME"] ? { "argo.workflow.name": env["ARGO_WORKFLOW_NAME"] } : {}),
      ...(env["ARGO_NODE_ID"] ? { "argo.node.id": env["ARGO_NODE_ID"] } : {}),
    }).merge(detectResources({ detectors: [envDetector] }));
    // The exporters read endpoint, headers, timeout and compression from the OTEL_EXPORTER_OTLP_* variables
    // (settings.ts checked them). Their own errors can quote a header's value (a token): not passed on.
    let exporter: GrpcExporter | ProtobufExporter;
    try {
      exporter = settings.protocol === "grpc" ? new GrpcExporter() : new ProtobufExporter();
    } catch (e) {
      throw new Error(
        `cannot set up the OTLP ${settings.protocol} exporter from the OTEL_EXPORTER_OTLP_* variables (${(e as Error).name}; its message is not shown, it may quote a header's value): check the endpoint and headers`,
      );
    }
    this.limit = settings.attributeValueLengthLimit;
    this.sendBeforeReply = (env["ARGO_CONTAINER_NAME"] ?? "").startsWith("init-");
    this.provider = new TracerProvider({
      resource,
      sampler: sampler(settings.sampler),
      // Bounded whatever an author sends: attribute values (keys, messages) cut, at most maxQueueSize spans waiting.
      spanLimits: { attributeValueLengthLimit: this.limit },
      spanProcessors: [new BatchSpanProcessor({ exporter, ...settings.batch })],
    });
    // Async context follows each RPC's awaits, so S3 request spans find their RPC's span.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    this.tracer = this.provider.getTracer("argo-s3-artifact-plugin", version);
    this.podContext = this.propagator.extract(
      ROOT_CONTEXT,
      { traceparent: env["TRACEPARENT"], tracestate: env["TRACESTATE"] },
      getter,
    );
  }

  /** The RPC's span, child of the caller's trace context (gRPC metadata), else of the pod's. */
  start(method: string, metadata: Record<string, string | undefined>): RpcSpan {
    const fromCall = this.propagator.extract(ROOT_CONTEXT, metadata, getter);
    const parent = trace.getSpanContext(fromCall) ? fromCall : this.podContext;
    const span = this.tracer.startSpan(
      `${SERVICE}/${method}`,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method } },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    return {
      run: <T>(body: () => Promise<T>) => context.with(ctx, body),
      end: (outcome: string, fields: RpcLog, error?: string) => {
        span.setAttributes(attributesOf(fields));
        span.setAttribute("rpc.grpc.status_code", grpcCodeOf(outcome));
        span.setAttribute("argo_s3.outcome", outcome);
        if (outcome !== "ok")
          span.setStatus({ code: SpanStatusCode.ERROR, ...(error ? { message: error.slice(0, this.limit) } : {}) });
        span.end();
        // Bounded: a collector that does not answer delays the reply by a second at most, and fails nothing.
        if (this.sendBeforeReply)
          return Promise.race([
            this.provider.forceFlush().catch(() => undefined),
            new Promise<void>((r) => setTimeout(r, 1000).unref()),
          ]);
        return undefined;
      },
    };
  }

  /**
   * One S3 request, reported when it has ended (the same fields as the debug
   * line and the metrics): a CLIENT span from its start to now, under the
   * active RPC's span.
   */
  s3Request(e: S3RequestEnded): void {
    const operation = e.s3;
    const span: Span = this.tracer.startSpan(
      `S3.${operation}`,
      {
        kind: SpanKind.CLIENT,
        startTime: Date.now() - e.ms,
        attributes: { "rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": operation, ...attributesOf(e) },
      },
      context.active(),
    );
    if (e.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: e.error.slice(0, this.limit) });
    span.end();
  }

  /** Sends what is buffered; at shutdown, so a pod's last spans are not lost. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

/**
 * The log fields worth a span attribute, the RPC line's and the S3 request
 * line's alike (no secret is ever among them), and the attribute each becomes.
 */
const ATTRIBUTES: Partial<Record<keyof RpcLog | keyof S3RequestEnded, string>> = {
  bucket: "aws.s3.bucket",
  key: "aws.s3.key",
  endpoint: "server.address",
  bytes: "argo_s3.bytes",
  files: "argo_s3.files",
  part: "aws.s3.part_number",
  range: "argo_s3.range",
  status: "http.response.status_code",
  attempts: "argo_s3.attempts",
  via: "argo_s3.via",
};

function attributesOf(f: RpcLog | S3RequestEnded): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [field, attribute] of Object.entries(ATTRIBUTES)) {
    const v: unknown = (f as Partial<Record<string, unknown>>)[field];
    if (attribute !== undefined && (typeof v === "string" || typeof v === "number")) out[attribute] = v;
  }
  return out;
}
