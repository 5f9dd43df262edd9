// Reading test/otlpreceiver's output: its "listening" line, and the spans in
// each export it prints as protojson (ids base64 there, hex here).
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  attributes: Record<string, string | number>;
  status: { code?: string; message?: string };
  /** The exporting process's resource attributes (service.name, k8s.pod.name, ...). */
  resource: Record<string, string | number>;
}

type AnyValue = { stringValue?: string; intValue?: string; doubleValue?: number; boolValue?: boolean };
type KeyValue = { key: string; value: AnyValue };
type Export = {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId?: string;
        spanId?: string;
        parentSpanId?: string;
        name: string;
        kind?: string;
        attributes?: KeyValue[];
        status?: { code?: string; message?: string };
      }[];
    }[];
  }[];
};

const hex = (b64: string | undefined) => Buffer.from(b64 ?? "", "base64").toString("hex");
const value = (v: AnyValue): string | number =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? String(v.boolValue)));
const attrs = (kvs: KeyValue[] | undefined) => Object.fromEntries((kvs ?? []).map((kv) => [kv.key, value(kv.value)]));

/** The receiver's addresses, from its first line; undefined for any other line. */
export function listeningOf(line: string): { grpc: string; http: string } | undefined {
  const m = /^listening grpc=(\S+) http=(\S+)$/.exec(line);
  return m ? { grpc: m[1]!, http: m[2]! } : undefined;
}

/** The spans of one export line. */
export function spansOf(line: string): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  for (const rs of (JSON.parse(line) as Export).resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          name: s.name,
          kind: s.kind ?? "",
          attributes: attrs(s.attributes),
          status: s.status ?? {},
          resource,
        });
      }
    }
  }
  return out;
}
