// The OTEL_* variables the plugin honours for traces (settings.ts): on only
// with an endpoint or OTEL_TRACES_EXPORTER=otlp, off with none/disabled, and
// every value it cannot honour refused at start with the variable's name.
import { describe, expect, it } from "vitest";
import { SettingsError, type Settings, readSettings } from "../../src/settings.js";

const tracing = (env: Record<string, string>) =>
  (readSettings(["/tmp/s3.sock"], env, undefined, false) as Settings).tracing;
const refused = (env: Record<string, string>) => {
  try {
    readSettings(["/tmp/s3.sock"], env, undefined, false);
  } catch (e) {
    expect(e).toBeInstanceOf(SettingsError);
    return (e as Error).message;
  }
  throw new Error("accepted");
};

describe("tracing settings", () => {
  it("off without an OTLP endpoint, even with TRACEPARENT or a sampler set", () => {
    expect(tracing({})).toBeUndefined();
    expect(
      tracing({
        TRACEPARENT: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        OTEL_TRACES_SAMPLER: "always_on",
      }),
    ).toBeUndefined();
  });

  it("on with an endpoint (either form) or OTEL_TRACES_EXPORTER=otlp; gRPC (as Argo's executor) and parent-based always-on by default", () => {
    const want = {
      protocol: "grpc",
      sampler: { kind: "always_on", parentBased: true, ratio: 1 },
      batch: { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 },
      attributeValueLengthLimit: 1024,
    };
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toEqual(want);
    expect(tracing({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toEqual(want);
    expect(tracing({ OTEL_TRACES_EXPORTER: "otlp" })).toEqual(want);
  });

  it("the traces-specific protocol wins; samplers and ratios as the specification names them", () => {
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc",
      })?.protocol,
    ).toBe("grpc");
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
      })?.sampler,
    ).toEqual({ kind: "traceidratio", parentBased: true, ratio: 0.25 });
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "always_off" })?.sampler).toEqual({
      kind: "always_off",
      parentBased: false,
      ratio: 1,
    });
  });

  it("off with OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true, endpoint or not", () => {
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_EXPORTER: "none" })).toBeUndefined();
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_SDK_DISABLED: "true" })).toBeUndefined();
  });

  it("refuses what it cannot honour, naming the variable", () => {
    expect(refused({ OTEL_TRACES_EXPORTER: "zipkin" })).toMatch(
      /^OTEL_TRACES_EXPORTER: "zipkin" is not supported; .*otlp.*none/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toMatch(
      /^OTEL_EXPORTER_OTLP_PROTOCOL: "http\/json" is not supported/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" })).toMatch(
      /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "jaeger_remote" })).toMatch(
      /^OTEL_TRACES_SAMPLER: "jaeger_remote" is not a sampler/,
    );
    expect(
      refused({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
        OTEL_TRACES_SAMPLER: "traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "1.5",
      }),
    ).toMatch(/^OTEL_TRACES_SAMPLER_ARG: "1.5" is not a ratio/);
  });

  it("honours the batch processor's and the attribute limit's variables (sdk-trace 3.x reads none itself)", () => {
    const t = tracing({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
      OTEL_BSP_MAX_QUEUE_SIZE: "100",
      OTEL_BSP_SCHEDULE_DELAY: "0",
      OTEL_BSP_EXPORT_TIMEOUT: "2000",
      OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: "64",
    });
    expect(t?.batch).toEqual({
      maxQueueSize: 100,
      maxExportBatchSize: 100,
      scheduledDelayMillis: 0,
      exportTimeoutMillis: 2000,
    });
    expect(t?.attributeValueLengthLimit).toBe(64);
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: "64",
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: "300",
      })?.attributeValueLengthLimit,
    ).toBe(300);
    expect(
      refused({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
        OTEL_BSP_MAX_QUEUE_SIZE: "10",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "20",
      }),
    ).toMatch(/^OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 20 is more than OTEL_BSP_MAX_QUEUE_SIZE/);
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_BSP_MAX_QUEUE_SIZE: "lots" })).toMatch(
      /^OTEL_BSP_MAX_QUEUE_SIZE: "lots" is not a whole number/,
    );
  });

  it("refuses endpoints, headers, timeouts, compressions and propagators the exporters would misuse, never repeating a header's value", () => {
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).toMatch(
      /^OTEL_EXPORTER_OTLP_ENDPOINT: not an http:\/\/ or https:\/\/ URL/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "ftp://c:21" })).toMatch(
      /^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: not an http/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://user:pw@c:4318" })).toMatch(
      /credentials in the URL are not accepted/,
    );
    for (const bad of [
      "authorization=Bearer%20s3cr3t-token%0A",
      "authorization=Bearer s3cr3t-tökén",
      "authorization=%ZZs3cr3t",
    ]) {
      const message = refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: bad });
      expect(message).toMatch(/^OTEL_EXPORTER_OTLP_HEADERS: the value of "authorization" .*not shown/);
      expect(message).not.toContain("s3cr3t");
    }
    expect(
      refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_TRACES_HEADERS: "no-equals-sign" }),
    ).toMatch(/^OTEL_EXPORTER_OTLP_TRACES_HEADERS: an entry is not "key=value"/);
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc,x-tenant=t1",
      })?.protocol,
    ).toBe("grpc");
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_TIMEOUT: "10s" })).toMatch(
      /^OTEL_EXPORTER_OTLP_TIMEOUT: "10s" is not a whole number/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" })).toMatch(
      /^OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" is not gzip or none/,
    );
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_PROPAGATORS: "tracecontext,b3" })).toMatch(
      /^OTEL_PROPAGATORS: "b3" not supported/,
    );
  });
});
