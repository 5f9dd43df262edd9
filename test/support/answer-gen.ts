// A seeded generator of HTTP/1.1 answers as an S3 endpoint sends them, valid
// and mutated (framing, header forms, lengths, line ends), each cut into
// pieces at random split points. Used by the differential test of the lean
// client against Node's own parser (llhttp) and by `npm run fuzz`.

export interface GeneratedAnswer {
  /** The bytes the server writes, in these pieces, then it closes the connection. */
  pieces: Buffer[];
  /** What was generated and which mutations were applied, for a failing case's report. */
  label: string;
}

type Rand = () => number;

const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const chance = (r: Rand, p: number) => r() < p;

function bytes(r: Rand, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

const HEADERS: [string, (r: Rand) => string][] = [
  ["ETag", (r) => `"${Math.floor(r() * 1e12).toString(16)}"`],
  [
    "x-amz-request-id",
    (r) =>
      Math.floor(r() * 1e15)
        .toString(36)
        .toUpperCase(),
  ],
  ["Content-Type", () => "application/octet-stream"],
  ["Last-Modified", () => "Thu, 03 Dec 2026 09:00:00 GMT"],
  ["Accept-Ranges", () => "bytes"],
  ["x-amz-checksum-crc32", () => "AAAAAA=="],
  ["Server", () => "MinIO"],
  ["Vary", () => "Origin, Accept-Encoding"],
];

/** Mutations of the head: each takes the head's lines and may change them. */
const HEAD_MUTATIONS: [string, (lines: string[], r: Rand) => void][] = [
  ["space-before-colon", (l) => (l[1] = l[1]!.replace(":", " :"))],
  ["fold", (l) => l.splice(2, 0, "  folded-value")],
  ["nul", (l) => (l[1] = l[1] + "\u0000x")],
  ["ctl", (l, r) => (l[1] = l[1] + String.fromCharCode(pick(r, [1, 8, 11, 12, 27, 127])))],
  ["obs-text", (l) => (l[1] = l[1] + "\u00e9")],
  ["no-colon", (l) => l.splice(1, 0, "x-broken header")],
  ["empty-name", (l) => l.splice(1, 0, ": value")],
  ["bad-name", (l, r) => l.splice(1, 0, `x${pick(r, ["(", "@", " ", "/", "[", "\u00e9"])}y: 1`)],
  ["version-1.0", (l) => (l[0] = l[0]!.replace("HTTP/1.1", "HTTP/1.0"))],
  [
    "version-bad",
    (l, r) => (l[0] = l[0]!.replace("HTTP/1.1", pick(r, ["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 ", "HTTP/11"]))),
  ],
  [
    "status-bad",
    (l, r) => (l[0] = l[0]!.replace(/ \d{3}/, pick(r, [" 20", " 2000", " abc", "  200", " 099", " 600"]))),
  ],
  ["no-reason", (l) => (l[0] = l[0]!.replace(/ (\d{3}).*$/, " $1"))],
  ["connection-close", (l) => l.splice(1, 0, "Connection: close")],
  ["long-header", (l, r) => l.splice(1, 0, `x-long: ${"a".repeat(pick(r, [100, 8000, 17000]))}`)],
  ["trailing-ws-value", (l) => (l[1] = l[1] + " \t")],
];

/** Mutations of framing: applied to the length/encoding choices below. */
type Framing = { cl: string[]; te: string[]; chunked: boolean };
const FRAMING_MUTATIONS: [string, (f: Framing, len: number, r: Rand) => void][] = [
  ["cl-and-te", (f, len) => (f.cl.push(String(len)), f.te.length || f.te.push("chunked"))],
  ["cl-dup-same", (f, len) => f.cl.push(String(len), String(len))],
  ["cl-dup-diff", (f, len) => f.cl.push(String(len), String(len + 1))],
  ["cl-list", (f, len) => (f.cl = [`${len}, ${len}`])],
  [
    "cl-huge",
    (f, _l, r) => (f.cl = [pick(r, ["99999999999999999999999", "18446744073709551616", "9007199254740993"])]),
  ],
  [
    "cl-sign",
    (f, len, r) => (f.cl = [pick(r, [`+${len}`, `-${len}`, ` ${len}x`, `0x${len.toString(16)}`, `${len}.0`, ""])]),
  ],
  ["cl-short", (f, len) => (f.cl = [String(Math.max(0, len - 3))])],
  ["cl-long", (f, len) => (f.cl = [String(len + 7)])],
  ["cl-zeros", (f, len) => (f.cl = [`000${len}`])],
  [
    "te-variant",
    (f, _l, r) =>
      (f.te = [
        pick(r, [
          "chunked, identity",
          "identity, chunked",
          "gzip",
          "CHUNKED",
          "chunked ",
          "chunked;q=1",
          "chunked, chunked",
          "x",
        ]),
      ]),
  ],
  ["te-dup", (f) => (f.te = ["chunked", "chunked"])],
  ["no-length", (f) => ((f.cl = []), (f.te = []))],
];

/** Mutations of a chunked body. */
const CHUNK_MUTATIONS: [string, (c: { size: string; ext: string; data: Buffer; end: string }[], r: Rand) => void][] = [
  ["size-too-big", (c) => (c[0]!.size = (c[0]!.data.length + 3).toString(16))],
  ["size-too-small", (c) => c[0]!.data.length > 1 && (c[0]!.size = (c[0]!.data.length - 1).toString(16))],
  ["size-huge", (c, r) => (c[0]!.size = pick(r, ["fffffffffffffffffff", "10000000000000000", "ffffffffffff"]))],
  ["size-bad", (c, r) => (c[0]!.size = pick(r, ["g", " 1", "1 ", "-1", "0x1", "", "1\t"]))],
  ["ext", (c, r) => (c[0]!.ext = pick(r, [";a=b", ";a", ';a="q v"', "; a=b", ";a =b", ";=", ";a=b c", ";a=\u0001"]))],
  ["data-no-crlf", (c) => (c[0]!.end = "")],
  ["data-lf", (c) => (c[0]!.end = "\n")],
  ["data-xx", (c) => (c[0]!.end = "XX")],
  ["size-lf", (c) => (c[0]!.size = c[0]!.size + "\n")],
];

export function generateAnswer(r: Rand): GeneratedAnswer {
  const labels: string[] = [];
  const mutate = chance(r, 0.7);
  const status = pick(r, [200, 200, 206, 206, 404, 500, 503, 204]);
  const bodyLen = status === 204 ? 0 : pick(r, [0, 1, 2, 17, 300, 1500, 4000, Math.floor(r() * 5000)]);
  const body = bytes(r, bodyLen);
  const f: Framing = { cl: [], te: [], chunked: false };
  if (chance(r, 0.4) && status !== 204) {
    f.te = ["chunked"];
    f.chunked = true;
  } else if (status !== 204 || chance(r, 0.3)) f.cl = [String(bodyLen)];
  labels.push(`${status} ${bodyLen}B ${f.chunked ? "chunked" : "length"}`);
  if (mutate && chance(r, 0.4)) {
    const [name, m] = pick(r, FRAMING_MUTATIONS);
    m(f, bodyLen, r);
    labels.push(name);
  }
  const lines = [`HTTP/1.1 ${status} ${status === 200 ? "OK" : status === 206 ? "Partial Content" : "Status"}`];
  for (const [name, value] of HEADERS)
    if (chance(r, 0.5)) lines.push(`${chance(r, 0.2) ? name.toLowerCase() : name}: ${value(r)}`);
  for (const v of f.cl) lines.push(`Content-Length: ${v}`);
  for (const v of f.te) lines.push(`Transfer-Encoding: ${v}`);
  if (lines.length < 3) lines.push("x-amz-id-2: abc", "x-amz-id-3: def");
  if (mutate && chance(r, 0.4)) {
    const [name, m] = pick(r, HEAD_MUTATIONS);
    m(lines, r);
    labels.push(name);
  }
  let head = lines.join("\r\n") + "\r\n\r\n";
  if (chance(r, 0.15)) {
    const n = chance(r, 0.2) ? 12 : 1 + Math.floor(r() * 3);
    head = `${"HTTP/1.1 100 Continue\r\n\r\n".repeat(n)}${head}`;
    labels.push(`${n}x100`);
  }
  if (mutate && chance(r, 0.15)) {
    head = chance(r, 0.5) ? head.replace(/\r\n/g, "\n") : head.replace("\r\n", "\n");
    labels.push("bare-lf");
  }
  let bodyWire: Buffer;
  const chunkedEncoded = f.te.some((t) => /chunked/i.test(t));
  if (chunkedEncoded) {
    const chunks: { size: string; ext: string; data: Buffer; end: string }[] = [];
    for (let off = 0; off < body.length;) {
      const n = Math.min(body.length - off, 1 + Math.floor(r() * 2000));
      chunks.push({ size: n.toString(16), ext: "", data: body.subarray(off, off + n), end: "\r\n" });
      off += n;
    }
    if (chunks.length === 0)
      (chunks.push({ size: "1", ext: "", data: Buffer.from("z"), end: "\r\n" }), labels.push("nonempty"));
    if (mutate && chance(r, 0.4)) {
      const [name, m] = pick(r, CHUNK_MUTATIONS);
      m(chunks, r);
      labels.push(name);
    }
    const trailer = chance(r, 0.2) ? pick(r, ["x-t: 1\r\n", "x t: 1\r\n", "x-t: \u0000\r\n"]) : "";
    if (trailer) labels.push("trailer");
    bodyWire = Buffer.concat([
      ...chunks.flatMap((c) => [Buffer.from(`${c.size}${c.ext}\r\n`, "latin1"), c.data, Buffer.from(c.end, "latin1")]),
      Buffer.from(`0\r\n${trailer}\r\n`, "latin1"),
    ]);
  } else {
    bodyWire = body;
    if (mutate && chance(r, 0.1)) {
      bodyWire = Buffer.concat([body, Buffer.from("EXTRA")]);
      labels.push("extra-bytes");
    }
  }
  const wire = Buffer.concat([Buffer.from(head, "latin1"), bodyWire]);
  // Split points: none, a few random ones, or every byte of a short answer.
  const pieces: Buffer[] = [];
  const mode = r();
  if (mode < 0.3) pieces.push(wire);
  else if (mode < 0.4 && wire.length < 400) for (let i = 0; i < wire.length; i++) pieces.push(wire.subarray(i, i + 1));
  else {
    const cuts = [
      ...new Set(Array.from({ length: 1 + Math.floor(r() * 6) }, () => Math.floor(r() * wire.length))),
    ].sort((a, b) => a - b);
    let at = 0;
    for (const c of cuts) if (c > at) (pieces.push(wire.subarray(at, c)), (at = c));
    pieces.push(wire.subarray(at));
  }
  return { pieces, label: labels.join(" + ") };
}
