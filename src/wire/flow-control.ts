// Larger HTTP/2 flow-control windows for the plugin's server. Node's HTTP/2
// defaults (64 KiB per stream and per connection) make a client streaming
// 2 MiB SaveStream chunks stop every 64 KiB and wait for a WINDOW_UPDATE from
// our event loop, which is busy with S3 at the same time. grpc-js exposes no
// option for the server's windows, so this reaches into two of its internals
// (the options it hands to http2.createServer, and its http2 servers), each
// guarded: if a grpc-js release renames them, the plugin keeps working with
// the defaults, only slower.
import type { Http2Server, ServerHttp2Session } from "node:http2";
import type { Server } from "@grpc/grpc-js";

/** Per-stream and per-connection receive window. Memory: at most this per active stream. */
export const WINDOW_BYTES = 4 * 1024 * 1024;

interface GrpcServerInternals {
  commonServerOptions?: { settings?: Record<string, number> };
  http2Servers?: Map<Http2Server, unknown>;
}

/** Before bind: advertise a larger initial stream window in the server's SETTINGS. */
export function widenStreamWindow(server: Server): void {
  const internals = server as unknown as GrpcServerInternals;
  const common = internals.commonServerOptions;
  if (!common) return;
  common.settings = { ...common.settings, initialWindowSize: WINDOW_BYTES };
}

/** After bind: raise each new connection's window, which SETTINGS cannot. */
export function widenConnectionWindow(server: Server): void {
  watchSessions(server, (session) => {
    try {
      session.setLocalWindowSize(WINDOW_BYTES);
    } catch {
      // An already-closing session: nothing to widen.
    }
  });
}

/** After bind: `onSession` for every new HTTP/2 session of the server's listeners (guarded as above). */
export function watchSessions(server: Server, onSession: (session: ServerHttp2Session) => void): void {
  const servers = (server as unknown as GrpcServerInternals).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const http2Server of servers.keys()) http2Server.on("session", onSession);
}

interface ReadableInternals {
  _readableState?: { highWaterMark?: number };
}

/**
 * grpc-js asks the client for more messages until its readable buffer holds 16
 * of them — 32 MiB of 2 MiB SaveStream chunks per call, outside every budget
 * of ours. Lower that read-ahead to `messages` so a call holds at most a chunk
 * or two beyond the part being filled. (Node has no public way to change a
 * stream's high-water mark after construction; guarded like the above.)
 */
export function limitReadAhead(call: object, messages: number): void {
  const state = (call as ReadableInternals)._readableState;
  if (state && typeof state.highWaterMark === "number") state.highWaterMark = messages;
}
