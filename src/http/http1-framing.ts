// The rules an HTTP/1.1 answer must follow before the lean client (http1.ts)
// believes a byte of it: RFC 9112's message syntax, read as a client that
// refuses instead of guessing. Everything here is at least as strict as Node's
// own parser (llhttp), which test/unit/http1-differential.test.ts checks over
// thousands of generated answers; where the two differ, this side refuses.
//
// Pure functions over bytes: no sockets, no timers.

/** Largest head (status line, headers and the blank line), as Node's own client. */
export const MAX_HEAD = 16 * 1024;
/** 1xx answers skipped before the real one (any more is a server stuck in a loop). */
export const MAX_INTERIM = 8;
/** Hex digits of a chunk size: 11 is 16 TiB, past S3's 5 TiB objects. */
const MAX_CHUNK_DIGITS = 11;
/** Decimal digits of a Content-Length: 15 stays below 2^53, exact in a double. */
const MAX_LENGTH_DIGITS = 15;
/** A chunk-size line, extensions included. */
const MAX_CHUNK_LINE = 4096;

export interface ResponseHead {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0 (never kept alive). */
  minor: 0 | 1;
}

/** How the body of an answer is delimited. */
export type Framing = { kind: "length"; length: number } | { kind: "chunked" };

export type Scan = { end: number } | { error: string } | { next: number };

/**
 * Looks through `buf[from, len)` for the end of a head (CRLF CRLF), refusing
 * bytes no head may hold on the way: NUL, a bare LF, a CR not followed by LF.
 * Returns where the head ends (after its blank line), an error, or where to
 * resume once more bytes have arrived.
 */
export function scanHead(buf: Uint8Array, from: number, len: number): Scan {
  for (let i = Math.max(0, from); i < len; i++) {
    const b = buf[i];
    if (b === 10) {
      if (i === 0 || buf[i - 1] !== 13) return { error: "a line of the answer's head ends in a bare LF" };
      if (i >= 3 && buf[i - 2] === 10 && buf[i - 3] === 13) return { end: i + 1 };
    } else if (b === 13) {
      if (i + 1 < len && buf[i + 1] !== 10) return { error: "the answer's head holds a CR that does not end a line" };
      if (i + 1 === len) return { next: i };
    } else if (b === 0) return { error: "the answer's head holds a NUL byte" };
  }
  return { next: len };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible ASCII, space, tab and obs-text; no other control byte. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;

/** One header line into `headers`, or why it is refused. */
function headerLine(line: string, headers: Record<string, string>): string | undefined {
  if (line.startsWith(" ") || line.startsWith("\t"))
    return "the answer folds a header over two lines (obsolete line folding)";
  const colon = line.indexOf(":");
  const name = colon < 0 ? "" : line.slice(0, colon);
  if (!TOKEN.test(name)) return `the answer has a malformed header line ${JSON.stringify(line.slice(0, 40))}`;
  const value = line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, "");
  if (!FIELD_VALUE.test(value)) return `the answer's header ${name} holds a control character`;
  const key = name.toLowerCase();
  const had = headers[key];
  if (had !== undefined && key === "content-length") return "the answer has more than one Content-Length";
  headers[key] = had === undefined ? value : `${had}, ${value}`;
  return undefined;
}

/** The head in `text` (latin1, without its blank line): status, version, headers. */
export function parseHead(text: string): ResponseHead | { error: string } {
  const lines = text.split("\r\n");
  const m = STATUS_LINE.exec(lines[0] ?? "");
  if (!m) return { error: "the answer is not HTTP/1.1 (bad status line)" };
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const refused = headerLine(lines[i] ?? "", headers);
    if (refused) return { error: refused };
  }
  return { status: Number(m[2]), headers, minor: m[1] === "1" ? 1 : 0 };
}

/** Whether the connection may carry another exchange after this answer. */
export function keepsAlive(head: ResponseHead): boolean {
  if (head.minor === 0) return false;
  return !(head.headers["connection"] ?? "").split(",").some((t) => t.trim().toLowerCase() === "close");
}

/**
 * How the body is delimited (RFC 9112 §6.3, as a client that refuses what it
 * would have to guess): none for 204 and 304, else exactly one of a plain
 * Content-Length or `Transfer-Encoding: chunked`. An answer read until the
 * connection closes is refused (a cut body would look complete).
 */
export function framingOf(head: ResponseHead): Framing | { error: string } {
  const te = head.headers["transfer-encoding"];
  const cl = head.headers["content-length"];
  // A Content-Length is judged wherever it appears, even where it delimits nothing (204, 304).
  if (cl !== undefined) {
    if (!/^\d+$/.test(cl))
      return { error: `the answer's Content-Length ${JSON.stringify(cl.slice(0, 40))} is not a number` };
    if (cl.replace(/^0+(?=\d)/, "").length > MAX_LENGTH_DIGITS)
      return { error: `the answer's Content-Length ${cl.slice(0, 40)} is too large` };
  }
  if (te !== undefined && cl !== undefined)
    return { error: "the answer has both Content-Length and Transfer-Encoding" };
  if (head.status === 204 || head.status === 304) {
    if (te !== undefined) return { error: `a ${head.status} answer with Transfer-Encoding` };
    return { kind: "length", length: 0 };
  }
  if (te !== undefined) {
    if (head.minor === 0) return { error: "an HTTP/1.0 answer with Transfer-Encoding" };
    if (te.toLowerCase() !== "chunked")
      return {
        error: `the answer's Transfer-Encoding ${JSON.stringify(te.slice(0, 40))} is not supported (only chunked)`,
      };
    return { kind: "chunked" };
  }
  if (cl === undefined) return { error: "the answer has neither Content-Length nor chunked encoding" };
  return { kind: "length", length: Number(cl) };
}

/** Where a chunked body's decoder stands. */
export interface ChunkState {
  at: "size" | "data" | "data-crlf" | "trailer" | "done";
  /** Data bytes left in the current chunk. */
  left: number;
  /** The size or trailer line collected so far (latin1). */
  line: string;
  /** Bytes of the CRLF after a chunk's data matched so far. */
  crlf: number;
  /** Bytes of trailer lines so far (capped like a head). */
  trailer: number;
}

export function chunkState(): ChunkState {
  return { at: "size", left: 0, line: "", crlf: 0, trailer: 0 };
}

const CHUNK_EXT = `(?:;[!#$%&'*+\\-.^_\`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\\-.^_\`|~0-9A-Za-z]+|"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"))?)*`;
const CHUNK_SIZE = new RegExp(`^([0-9A-Fa-f]+)${CHUNK_EXT}$`);

/**
 * One step of a chunked body from `off`: data bytes found there, or the offset
 * after framing bytes, or why the framing is refused. Every step consumes at
 * least one byte unless it fails or the body is done.
 */
export function chunkStep(s: ChunkState, chunk: Buffer, off: number): { off: number; data?: Buffer; error?: string } {
  switch (s.at) {
    case "data": {
      const n = Math.min(s.left, chunk.length - off);
      s.left -= n;
      if (s.left === 0) {
        s.at = "data-crlf";
        s.crlf = 0;
      }
      return { off: off + n, data: chunk.subarray(off, off + n) };
    }
    case "data-crlf": {
      const want = s.crlf === 0 ? 13 : 10;
      if (chunk[off] !== want)
        return { off, error: "a chunk's data is not followed by CRLF (the chunk is longer than its size says)" };
      if (++s.crlf === 2) s.at = "size";
      return { off: off + 1 };
    }
    case "done":
      return { off, error: "bytes after the end of a chunked body" };
    default:
      return chunkLine(s, chunk, off);
  }
}

/** A size line or a trailer line, collected up to its LF and then judged. */
function chunkLine(s: ChunkState, chunk: Buffer, off: number): { off: number; error?: string } {
  const nl = chunk.indexOf(10, off);
  const end = nl < 0 ? chunk.length : nl + 1;
  s.line += chunk.toString("latin1", off, end);
  if (s.at === "trailer") s.trailer += end - off;
  if (s.at === "size" ? s.line.length > MAX_CHUNK_LINE : s.trailer > MAX_HEAD)
    return {
      off: end,
      error: s.at === "size" ? "a chunk-size line of the answer is too long" : "the answer's trailers are too large",
    };
  if (nl < 0) return { off: end };
  if (!s.line.endsWith("\r\n")) return { off: end, error: "a line of the chunked body ends in a bare LF" };
  const line = s.line.slice(0, -2);
  s.line = "";
  if (line.includes("\r")) return { off: end, error: "a line of the chunked body holds a CR that does not end it" };
  if (s.at === "trailer") {
    if (line === "") s.at = "done";
    else {
      const refused = headerLine(line, {});
      if (refused) return { off: end, error: `in the trailers: ${refused}` };
    }
    return { off: end };
  }
  const m = CHUNK_SIZE.exec(line);
  if (!m) return { off: end, error: `bad chunk size ${JSON.stringify(line.slice(0, 20))} in the answer` };
  const digits = (m[1] as string).replace(/^0+(?=[0-9A-Fa-f])/, "");
  if (digits.length > MAX_CHUNK_DIGITS)
    return { off: end, error: `a chunk size of the answer is too large (${digits.length} hex digits)` };
  const size = Number.parseInt(digits, 16);
  if (size === 0) s.at = "trailer";
  else {
    s.at = "data";
    s.left = size;
  }
  return { off: end };
}
