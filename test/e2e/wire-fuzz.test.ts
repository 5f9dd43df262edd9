// Wire-level robustness: random, truncated, bit-flipped and hostile protobuf
// payloads (and one oversized message per method) sent straight to every
// method path of the running plugin with identity serializers. Every answer
// must be a gRPC status or a well-formed response, nothing may hang, and
// afterwards the process still serves real traffic and has printed no stack
// trace of an uncaught exception.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { Client, Metadata, type ServiceError, credentials, status } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanForSecrets, tally } from "../support/ledger.js";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { PROTO_PATH } from "../../src/wire/proto.js";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";
import { prng } from "../../scripts/lib/prng.mjs";

type Kind = "unary" | "server" | "client";
interface MethodSpec {
  kind: Kind;
  req: string;
  res: string;
}

const METHODS: Record<string, MethodSpec> = {
  Load: { kind: "unary", req: "LoadArtifactRequest", res: "LoadArtifactResponse" },
  OpenStream: { kind: "server", req: "OpenStreamRequest", res: "OpenStreamResponse" },
  Save: { kind: "unary", req: "SaveArtifactRequest", res: "SaveArtifactResponse" },
  Delete: { kind: "unary", req: "DeleteArtifactRequest", res: "DeleteArtifactResponse" },
  ListObjects: { kind: "unary", req: "ListObjectsRequest", res: "ListObjectsResponse" },
  IsDirectory: { kind: "unary", req: "IsDirectoryRequest", res: "IsDirectoryResponse" },
  SaveStream: { kind: "client", req: "SaveStreamArtifactRequest", res: "SaveArtifactResponse" },
  GetCapabilities: { kind: "unary", req: "GetCapabilitiesRequest", res: "GetCapabilitiesResponse" },
};

/** Statuses a malformed or hostile request may legitimately end with. */
const ACCEPTED = new Set<number>([status.INVALID_ARGUMENT, status.INTERNAL, status.RESOURCE_EXHAUSTED]);
const DEADLINE_MS = 10_000;
const MiB = 1024 * 1024;

// Hand-rolled protobuf encoding, so wire types and lengths can be wrong on purpose.
function varint(n: number): Buffer {
  const out: number[] = [];
  let v = BigInt(n) & 0xffffffffffffffffn;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const tag = (field: number, wireType: number) => varint(field * 8 + wireType);
const ld = (field: number, payload: Buffer) => Buffer.concat([tag(field, 2), varint(payload.length), payload]);
const str = (field: number, s: string) => ld(field, Buffer.from(s));

let minio: MinioServer;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
let raw: Client;
let root: protobuf.Root;
const BUCKET = "fuzz";

const config = () => `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\n`;

interface Payload {
  method: string;
  label: string;
  frames: Buffer[];
}

type Outcome = { code: number; details: string; responses: Buffer[]; ms: number };

function call(method: string, frames: Buffer[]): Promise<Outcome> {
  const spec = METHODS[method]!;
  const path = `/artifact.ArtifactService/${method}`;
  const id = (b: Buffer) => b;
  const opts = { deadline: Date.now() + DEADLINE_MS };
  const started = Date.now();
  return new Promise((resolve) => {
    const done = (code: number, details: string, responses: Buffer[]) =>
      resolve({ code, details, responses, ms: Date.now() - started });
    const unaryCb = (err: ServiceError | null, res?: Buffer) =>
      err ? done(err.code, err.details, []) : done(status.OK, "", [res!]);
    if (spec.kind === "unary") {
      raw.makeUnaryRequest(path, id, id, frames[0]!, new Metadata(), opts, unaryCb);
    } else if (spec.kind === "client") {
      const c = raw.makeClientStreamRequest(path, id, id, new Metadata(), opts, unaryCb);
      c.on("error", () => undefined);
      for (const f of frames) c.write(f);
      c.end();
    } else {
      const c = raw.makeServerStreamRequest(path, id, id, frames[0]!, new Metadata(), opts);
      const responses: Buffer[] = [];
      let st: { code: number; details: string } | undefined;
      let finished = false;
      const maybe = () => st && finished && done(st.code, st.details, responses);
      c.on("data", (b: Buffer) => responses.push(b));
      c.on("status", (s: { code: number; details: string }) => {
        st = s;
        maybe();
      });
      c.on("end", () => {
        finished = true;
        maybe();
      });
      c.on("error", () => {
        finished = true;
        maybe();
      });
    }
  });
}

/** A valid request for `method`, pointing only at the fuzz bucket and the sandbox. */
function validRequest(method: string): Buffer {
  const spec = METHODS[method]!;
  const a = artifact(config(), "fuzz/obj.bin");
  const bodies: Record<string, object> = {
    Load: { inputArtifact: a, path: join(work, "load-target") },
    OpenStream: { artifact: a },
    Save: { outputArtifact: a, path: join(work, "missing-source") },
    Delete: { artifact: artifact(config(), "fuzz/never-existed") },
    ListObjects: { artifact: a },
    IsDirectory: { artifact: a },
    SaveStream: { outputArtifact: a },
    GetCapabilities: {},
  };
  const type = root.lookupType(`artifact.${spec.req}`);
  return Buffer.from(type.encode(type.fromObject(bodies[method]!)).finish());
}

/** The first field of every request that carries an artifact (Save's artifact is field 2). */
function artifactField(method: string): number {
  return method === "Save" ? 2 : 1;
}

function hostile(method: string): Array<[string, Buffer]> {
  const f = artifactField(method);
  const plugin = (fields: Buffer[]) => ld(5, Buffer.concat(fields));
  const art = (fields: Buffer[]) => ld(f, Buffer.concat(fields));
  const out: Array<[string, Buffer]> = [
    ["huge configuration (6 MiB)", art([plugin([str(2, `bucket: b\n# ${"x".repeat(6 * MiB)}`)])])],
    ["huge key (1 MiB)", art([plugin([str(2, config()), str(4, `fuzz/${"k".repeat(MiB)}`)])])],
    ["huge artifact name (2 MiB)", art([str(1, "n".repeat(2 * MiB)), plugin([str(2, config()), str(4, "fuzz/x")])])],
    ["key with NUL and control bytes", art([plugin([str(2, config()), str(4, "fuzz/\0\x01\x7f/ä")])])],
    ["artifact field as varint", Buffer.concat([tag(f, 0), varint(123456789)])],
    ["artifact field as fixed64", Buffer.concat([tag(f, 1), Buffer.alloc(8, 0xab)])],
    ["artifact field as fixed32", Buffer.concat([tag(f, 5), Buffer.alloc(4, 0xcd)])],
    [
      "string field as varint",
      art([Buffer.concat([tag(1, 0), varint(7)]), plugin([Buffer.concat([tag(2, 0), varint(1)])])]),
    ],
    ["invalid wire types 6 and 7", Buffer.concat([tag(f, 6), tag(f, 7), Buffer.alloc(16, 0xff)])],
    ["unterminated group", Buffer.concat([tag(f, 3), tag(2, 0), varint(1)])],
    ["stray end-group", tag(f, 4)],
    ["overlong varint", Buffer.concat([tag(f, 0), Buffer.alloc(12, 0xff), Buffer.from([0x01])])],
    ["length beyond the end", Buffer.concat([tag(f, 2), varint(1_000_000), Buffer.from("short")])],
    ["field number 0", Buffer.concat([Buffer.from([0x02, 0x03]), Buffer.from("abc")])],
    ["max field number, unknown", Buffer.concat([tag(536870911, 2), varint(3), Buffer.from("abc")])],
    [
      "negative connection timeout, bools out of range",
      art([
        plugin([str(2, config()), str(4, "fuzz/x"), tag(3, 0), varint(-1)]),
        tag(6, 0),
        varint(2 ** 40),
        tag(8, 0),
        varint(255),
      ]),
    ],
  ];
  // Deeply nested garbage: 20,000 levels of length-delimited nesting (the
  // known Artifact/plugin levels, then unknown fields all the way down) and
  // 100,000 nested groups.
  let nested = Buffer.from("core");
  for (let i = 0; i < 20_000; i++) nested = ld(i % 2 === 0 ? 15 : 5, nested);
  out.push(["20,000 nested length-delimited levels", ld(f, nested)]);
  const depth = 100_000;
  const groups = Buffer.concat([
    ...Array.from({ length: depth }, () => tag(9, 3)),
    ...Array.from({ length: depth }, () => tag(9, 4)),
  ]);
  out.push(["100,000 nested groups", groups]);
  out.push(["100,000 nested groups inside the artifact", ld(f, groups)]);
  return out;
}

function payloads(): Payload[] {
  const rand = prng(0x5eed);
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const list: Payload[] = [];
  for (const method of Object.keys(METHODS)) {
    const valid = validRequest(method);
    const streamed = METHODS[method]!.kind === "client";
    for (let i = 0; i < 30; i++) {
      const frames = streamed ? Array.from({ length: 1 + int(3) }, () => bytes(int(512))) : [bytes(int(512))];
      list.push({ method, label: `random #${i}`, frames });
    }
    for (let i = 0; i < 15; i++) {
      const cut = int(Math.max(valid.length, 1));
      list.push({ method, label: `truncated at ${cut}/${valid.length}`, frames: [valid.subarray(0, cut)] });
    }
    for (let i = 0; i < 10; i++) {
      const flipped = Buffer.from(valid);
      for (let k = 0; k < 1 + int(4) && flipped.length > 0; k++) flipped[int(flipped.length)]! ^= 1 << int(8);
      list.push({ method, label: `bit-flipped #${i}`, frames: [flipped] });
    }
    for (const [label, buf] of hostile(method)) list.push({ method, label, frames: [buf] });
    if (streamed) {
      // A valid metadata frame followed by garbage frames and a truncated one.
      list.push({ method, label: "valid head, garbage tail", frames: [valid, bytes(64), valid.subarray(0, 3)] });
      const chunk = Buffer.concat([str(2, "payload")]);
      list.push({ method, label: "valid head, chunk, truncated chunk", frames: [valid, chunk, chunk.subarray(0, 4)] });
    }
    // Over the server's 8 MiB receive limit.
    list.push({
      method,
      label: "oversized (9 MiB)",
      frames: [Buffer.concat([str(artifactField(method), ""), ld(99, randomBytes(9 * MiB))])],
    });
  }
  return list;
}

beforeAll(async () => {
  minio = await startMinio();
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "wire-fuzz-"));
  root = protobuf.loadSync(PROTO_PATH);
  raw = new Client(`unix:${plugin.socket}`, credentials.createInsecure(), {});
});

afterAll(async () => {
  raw?.close();
  const code = await plugin?.stop();
  expect(code).toBe(0);
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("wire fuzzing", () => {
  it("answers every random, truncated, hostile and oversized payload with a status or a well-formed response", async () => {
    const list = payloads();
    expect(list.length).toBeGreaterThan(300);
    const problems: string[] = [];
    const codes = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const p = list[next++]!;
        const o = await call(p.method, p.frames);
        const what = `${p.method} ${p.label}`;
        codes.set(status[o.code] ?? String(o.code), (codes.get(status[o.code] ?? String(o.code)) ?? 0) + 1);
        if (o.code === status.OK) {
          const type = root.lookupType(`artifact.${METHODS[p.method]!.res}`);
          if (o.responses.length === 0) problems.push(`${what}: OK without a response`);
          for (const r of o.responses) {
            try {
              type.decode(r);
            } catch (e) {
              problems.push(`${what}: malformed response (${(e as Error).message})`);
            }
          }
        } else if (!ACCEPTED.has(o.code)) {
          problems.push(`${what}: status ${status[o.code] ?? o.code} after ${o.ms} ms: ${o.details.slice(0, 200)}`);
        }
        if (p.label.startsWith("oversized") && o.code !== status.RESOURCE_EXHAUSTED) {
          problems.push(`${what}: expected RESOURCE_EXHAUSTED, got ${status[o.code]}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    tally({
      suite: "hostile: wire fuzz (random, truncated, oversized payloads)",
      hostileTried: list.length,
      hostileRefused: list.length - problems.length,
    });
    expect(problems).toEqual([]);
    expect(plugin.proc.exitCode).toBeNull();
    // Both kinds of answer happened: refusals and regular (error-carrying) responses.
    expect(codes.get("OK") ?? 0).toBeGreaterThan(0);
    expect((codes.get("INVALID_ARGUMENT") ?? 0) + (codes.get("INTERNAL") ?? 0)).toBeGreaterThan(0);
  }, 240_000);

  it("refuses an OpenStream request without an artifact with INVALID_ARGUMENT at once (it used to hang until the deadline); so is OpenStream of a directory", async () => {
    for (const frame of [Buffer.alloc(0), ld(1, Buffer.alloc(0)), ld(1, str(1, "no-plugin"))]) {
      const o = await call("OpenStream", [frame]);
      expect(o.code, o.details).toBe(status.INVALID_ARGUMENT);
      expect(o.ms).toBeLessThan(5000);
    }
    // The same path carries "this key is a directory", which Argo can really send.
    const dir = join(work, "a-directory");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "f.txt"), "f");
    expect(await plugin.client.save(artifact(config(), "dir-artifact"), dir)).toEqual({ success: true, error: "" });
    const type = root.lookupType("artifact.OpenStreamRequest");
    const req = Buffer.from(type.encode(type.fromObject({ artifact: artifact(config(), "dir-artifact") })).finish());
    const o = await call("OpenStream", [req]);
    expect(o.code, o.details).toBe(status.INVALID_ARGUMENT);
    expect(o.details).toContain("dir-artifact");
    expect(o.ms).toBeLessThan(5000);
  });

  it("still serves GetCapabilities and a real Save/Load round trip afterwards, with no uncaught exception in its output", async () => {
    expect(plugin.proc.exitCode).toBeNull();
    expect(await plugin.client.getCapabilities()).toEqual({ supportsSaveStream: true });
    const data = randomBytes(100_000);
    const src = join(work, "roundtrip.bin");
    writeFileSync(src, data);
    const a = artifact(config(), "after-fuzz/roundtrip.bin");
    expect(await plugin.client.save(a, src)).toEqual({ success: true, error: "" });
    mkdirSync(join(work, "out"), { recursive: true });
    const dest = join(work, "out", "roundtrip.bin");
    expect(await plugin.client.load(a, dest)).toEqual({ success: true, error: "" });
    expect(readFileSync(dest).equals(data)).toBe(true);
    const out = plugin.output();
    expect(out).not.toMatch(/uncaught|unhandled/i);
    // A stack frame, raw or JSON-escaped inside a log line.
    expect(out).not.toMatch(/(\n|\\n)\s+at \S.*:\d+:\d+/);
    expect(scanForSecrets("wire fuzz", [out], { "MinIO root secret key": minio.secretKey })).toEqual([]);
  });
});
