// A hostile S3 endpoint on loopback, written on raw sockets so it can break
// HTTP as well as S3: it serves HEAD and GET (ranges included) of objects held
// in memory, and for each GET answer a fault chosen by the test: bodies cut
// short or longer than announced, two framings at once, a Content-Range for
// other bytes, a stray answer behind the real one, a slow drip, silence. HEAD
// answers stay valid (they go through the AWS SDK, which is not under test
// here); GETs are what the lean data path reads.
import { createHash } from "node:crypto";
import { type AddressInfo, type Server, type Socket, createServer } from "node:net";
import { crc32 } from "node:zlib";

export const GET_FAULTS = [
  "ok",
  "cut", // announced length, then the connection closes halfway
  "longer-chunked", // chunked, the right bytes and then more
  "cl-and-chunked", // Content-Length and chunked together, chunked data longer
  "extra-behind", // the right answer, garbage right behind it
  "stray-later", // the right answer; a plausible second answer a moment later
  "wrong-range", // 206 naming (and carrying) other bytes of the same length
  "ignore-range", // 200 with the whole object to a ranged GET
  "wrong-length", // Content-Length one byte longer, body as long
  "wrong-etag", // the bytes of another version
  "http10", // HTTP/1.0 answer kept open
  "error-500", // an S3 error answer
  "drip", // the head, then a byte every 300 ms
  "trickle", // the head, then 2 KiB a second: above the plugin's general minimum rate, below the shared sidecar's
  "head-drip", // the head itself a byte every 100 ms
  "silent", // nothing at all
  "corrupt", // one byte flipped (only where the object has a CRC32 to catch it)
] as const;
export type GetFault = (typeof GET_FAULTS)[number];

export interface HostileObject {
  data: Buffer;
  /** Whether HEAD reports a full-object CRC32 (objects written by other tools may have none). */
  crc: boolean;
}

export interface HostileS3 {
  endpoint: string;
  port: number;
  objects: Map<string, HostileObject>;
  /** Chooses each GET's fault: key, range asked ("bytes=a-b" or undefined), attempt of that range (1, 2, …). */
  fault: (key: string, range: string | undefined, attempt: number) => GetFault;
  /** Faults applied so far, by kind. */
  applied: Map<GetFault, number>;
  stop(): Promise<void>;
}

const etagOf = (data: Buffer) => `"${createHash("md5").update(data).digest("hex")}"`;
const crcOf = (data: Buffer) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(data));
  return b.toString("base64");
};

function headLines(status: string, headers: Record<string, string | number>): string {
  return `HTTP/1.1 ${status}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
}

export async function startHostileS3(bucket: string): Promise<HostileS3> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const attempts = new Map<string, number>();
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => (timers.delete(t), f()), ms);
    timers.add(t);
  };
  const s3: HostileS3 = {
    endpoint: "",
    port: 0,
    objects: new Map(),
    fault: () => "ok",
    applied: new Map(),
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => server.close(r));
    },
  };

  function answer(sock: Socket, method: string, path: string, headers: Record<string, string>): void {
    const key = decodeURIComponent(path.split("?")[0]!.replace(new RegExp(`^/${bucket}/`), ""));
    const obj = s3.objects.get(key);
    if (!obj) {
      const xml = `<Error><Code>NoSuchKey</Code><Message>no such key</Message><Key>${key}</Key></Error>`;
      sock.write(
        headLines("404 Not Found", {
          "Content-Type": "application/xml",
          "Content-Length": method === "HEAD" ? 0 : xml.length,
        }) + (method === "HEAD" ? "" : xml),
      );
      return;
    }
    const { data } = obj;
    const etag = etagOf(data);
    const common: Record<string, string | number> = {
      ETag: etag,
      "Last-Modified": "Thu, 03 Dec 2026 09:00:00 GMT",
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
    };
    const checksum: Record<string, string> =
      obj.crc && headers["x-amz-checksum-mode"] === "ENABLED"
        ? { "x-amz-checksum-crc32": crcOf(data), "x-amz-checksum-type": "FULL_OBJECT" }
        : {};
    if (method === "HEAD") {
      sock.write(headLines("200 OK", { ...common, ...checksum, "Content-Length": data.length }));
      return;
    }
    const range = headers["range"];
    const m = range ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
    const start = m ? Number(m[1]) : 0;
    const end = m ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    const body = data.subarray(start, end + 1);
    const id = `${key} ${range ?? "whole"}`;
    const attempt = (attempts.get(id) ?? 0) + 1;
    attempts.set(id, attempt);
    let fault = s3.fault(key, range, attempt);
    if (fault === "corrupt" && !obj.crc) fault = "ok";
    s3.applied.set(fault, (s3.applied.get(fault) ?? 0) + 1);
    const status = m ? "206 Partial Content" : "200 OK";
    const ranged: Record<string, string> = m ? { "Content-Range": `bytes ${start}-${end}/${data.length}` } : {};
    const okHead: Record<string, string | number> = {
      ...common,
      ...(m ? {} : checksum),
      ...ranged,
      "Content-Length": body.length,
    };
    const other = (n: number) => Buffer.alloc(n, 0x5a);
    switch (fault) {
      case "ok":
        sock.write(headLines(status, okHead));
        sock.write(body);
        return;
      case "cut":
        sock.write(headLines(status, okHead));
        sock.end(body.subarray(0, body.length >> 1), () => sock.destroy());
        return;
      case "longer-chunked":
      case "cl-and-chunked": {
        const h: Record<string, string | number> = { ...common, ...ranged, "Transfer-Encoding": "chunked" };
        if (fault === "cl-and-chunked") h["Content-Length"] = body.length;
        const more = Buffer.concat([body, other(64 * 1024 + 7)]);
        sock.write(headLines(status, h) + `${more.length.toString(16)}\r\n`);
        sock.write(more);
        sock.write("\r\n0\r\n\r\n");
        return;
      }
      case "extra-behind":
        sock.write(headLines(status, okHead));
        sock.write(Buffer.concat([body, Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad")]));
        return;
      case "stray-later": {
        sock.write(headLines(status, okHead));
        sock.write(body);
        // A plausible answer (another version's: same length and range, other bytes and ETag) for
        // whatever is asked next on this connection. One that named this version too could not be
        // told from the next answer once that request is on the wire; see docs/engine.md.
        later(
          5,
          () =>
            !sock.destroyed &&
            sock.write(headLines(status, { ...okHead, ETag: etagOf(other(body.length)) })) &&
            sock.write(other(body.length)),
        );
        return;
      }
      case "wrong-range": {
        // Bytes of the same length from elsewhere in the object, honestly labelled.
        const from = start === 0 ? Math.min(1, data.length - body.length) : 0;
        const wrong = data.subarray(from, from + body.length);
        sock.write(
          headLines("206 Partial Content", {
            ...common,
            "Content-Range": `bytes ${from}-${from + wrong.length - 1}/${data.length}`,
            "Content-Length": wrong.length,
          }),
        );
        sock.write(wrong);
        return;
      }
      case "ignore-range":
        sock.write(headLines("200 OK", { ...common, "Content-Length": data.length }));
        sock.write(data);
        return;
      case "wrong-length":
        sock.write(headLines(status, { ...okHead, "Content-Length": body.length + 1 }));
        sock.end(body, () => sock.destroy());
        return;
      case "wrong-etag":
        sock.write(headLines(status, { ...okHead, ETag: `"${"0".repeat(32)}"` }));
        sock.write(other(body.length));
        return;
      case "http10":
        sock.write(headLines(status, okHead).replace("HTTP/1.1", "HTTP/1.0"));
        sock.write(body);
        return;
      case "error-500": {
        const xml =
          "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";
        sock.write(
          headLines("500 Internal Server Error", { "Content-Type": "application/xml", "Content-Length": xml.length }) +
            xml,
        );
        return;
      }
      case "drip": {
        sock.write(headLines(status, okHead));
        let i = 0;
        const drip = () => !sock.destroyed && i < body.length && (sock.write(body.subarray(i, ++i)), later(300, drip));
        drip();
        return;
      }
      case "trickle": {
        sock.write(headLines(status, okHead));
        let i = 0;
        const step = 2048;
        const trickle = () =>
          !sock.destroyed && i < body.length && (sock.write(body.subarray(i, (i += step))), later(1000, trickle));
        trickle();
        return;
      }
      case "head-drip": {
        const head = Buffer.from(headLines(status, okHead), "latin1");
        let i = 0;
        const drip = () =>
          !sock.destroyed &&
          (i < head.length ? (sock.write(head.subarray(i, ++i)), later(100, drip)) : sock.write(body));
        drip();
        return;
      }
      case "silent":
        return;
      case "corrupt": {
        const bad = Buffer.from(body);
        if (bad.length > 0) bad[bad.length >> 1]! ^= 0x01;
        sock.write(headLines(status, okHead));
        sock.write(bad);
        return;
      }
    }
  }

  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => undefined);
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      for (let end = buf.indexOf("\r\n\r\n"); end >= 0; end = buf.indexOf("\r\n\r\n")) {
        const lines = buf.slice(0, end).split("\r\n");
        buf = buf.slice(end + 4);
        const [method = "", path = ""] = (lines[0] ?? "").split(" ");
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(":");
          if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        answer(sock, method, path, headers);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  s3.port = (server.address() as AddressInfo).port;
  s3.endpoint = `127.0.0.1:${s3.port}`;
  return s3;
}
