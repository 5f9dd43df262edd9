// The OTEL_* variables the plugin honours for traces (settings.ts): on only
// with an endpoint or OTEL_TRACES_EXPORTER=otlp, off with none/disabled, and
// every value it cannot honour refused at start with the variable's name.
import { describe, expect, it } from "vitest";
import { SettingsError, type Settings, readSettings } from "../../src/settings.js";

const tracing = (env: Record<string, string>) => (readSettings(["/tmp/s3.sock"], env, undefined, false) as Settings).tracing;
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
    expect(tracing({ TRACEPARENT: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", OTEL_TRACES_SAMPLER: "always_on" })).toBeUndefined();
  });

  it("on with an endpoint (either form) or OTEL_TRACES_EXPORTER=otlp; http/protobuf and parent-based always-on by default", () => {
    const want = { protocol: "http/protobuf", sampler: { kind: "always_on", parentBased: true, ratio: 1 } };
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toEqual(want);
    expect(tracing({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toEqual(want);
    expect(tracing({ OTEL_TRACES_EXPORTER: "otlp" })).toEqual(want);
  });

  it("the traces-specific protocol wins; samplers and ratios as the specification names them", () => {
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" })?.protocol).toBe("grpc");
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" })?.sampler).toEqual({ kind: "traceidratio", parentBased: true, ratio: 0.25 });
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "always_off" })?.sampler).toEqual({ kind: "always_off", parentBased: false, ratio: 1 });
  });

  it("off with OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true, endpoint or not", () => {
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_EXPORTER: "none" })).toBeUndefined();
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_SDK_DISABLED: "true" })).toBeUndefined();
  });

  it("refuses what it cannot honour, naming the variable", () => {
    expect(refused({ OTEL_TRACES_EXPORTER: "zipkin" })).toMatch(/^OTEL_TRACES_EXPORTER: "zipkin" is not supported; .*otlp.*none/);
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toMatch(/^OTEL_EXPORTER_OTLP_PROTOCOL: "http\/json" is not supported/);
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" })).toMatch(/^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:/);
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "jaeger_remote" })).toMatch(/^OTEL_TRACES_SAMPLER: "jaeger_remote" is not a sampler/);
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1.5" })).toMatch(/^OTEL_TRACES_SAMPLER_ARG: "1.5" is not a ratio/);
  });
});
