// OpenStream without grpc-js's copy of every frame. grpc-js serializes a
// response message and then copies it into a new buffer behind gRPC's 5-byte
// length prefix (BaseServerInterceptingCall.serializeMessage): for a 2 MiB
// frame that is a 2 MiB allocation and a 2 MiB copy, for every frame streamed.
// Frames marked inPlace already have room in front of their bytes
// (util/headroom.ts), so for this call the whole message is written there.
// grpc-js exposes no hook for this; the method is replaced on the one call's
// own object, guarded: where a grpc-js release renames it (or an interceptor
// stands in between) the call keeps grpc-js's copy, only slower.
import { constants } from "node:http2";
import type { OpenStreamResponse } from "./messages.js";
import { grpcMessageInPlace } from "../util/headroom.js";

interface Http2StreamInternals {
  closed?: boolean;
  destroyed?: boolean;
  once?: (event: "close", listener: () => void) => unknown;
  close?: (code?: number) => void;
}

interface InterceptingCallInternals {
  serializeMessage?: (value: unknown) => Buffer;
  stream?: Http2StreamInternals;
}

/**
 * Makes `call` send inPlace frames without a copy; true when it does. A frame's bytes are then
 * read by the transport until its write is done. grpc-js encodes a call's next message only
 * after that (ServerWritableStreamImpl is a Writable: one _write at a time, each ending with
 * the HTTP/2 write's callback), so the next frame's prefix, written over this one's tail, is
 * safe; a range's buffer must not be reused while a frame of it may still be queued (see
 * readObject, which gives up its buffer instead when the stream ends early).
 */
export function sendFramesInPlace(call: object): boolean {
  const inner = (call as { call?: InterceptingCallInternals }).call;
  const original = inner?.serializeMessage;
  if (!inner || typeof original !== "function") return false;
  inner.serializeMessage = (value: unknown): Buffer => {
    const frame = value as OpenStreamResponse;
    return frame.inPlace && frame.data ? grpcMessageInPlace(frame.data) : original.call(inner, value);
  };
  return true;
}

/**
 * Waits until `allSent` (the call's queued frames are written out; undefined: none are queued) or
 * the call's HTTP/2 stream has closed, for at most `graceMs`; then resets the stream (RST_STREAM
 * CANCEL), so that frames still queued behind a reader that takes nothing are dropped and their
 * buffers freed, and waits for it to close. Resolves at once where the stream cannot be reached
 * (guarded as above).
 */
export async function untilFramesGone(
  call: object,
  allSent: Promise<void> | undefined,
  graceMs: number,
): Promise<void> {
  const stream = (call as { call?: InterceptingCallInternals }).call?.stream;
  if (!allSent || !stream || stream.closed || stream.destroyed || !stream.once || !stream.close) return;
  const closed = new Promise<void>((resolve) => stream.once?.("close", resolve));
  const timers: NodeJS.Timeout[] = [];
  const after = (ms: number) => new Promise<void>((resolve) => timers.push(setTimeout(resolve, ms)));
  try {
    const gone = await Promise.race([
      closed.then(() => true),
      allSent.then(() => true),
      after(graceMs).then(() => false),
    ]);
    if (gone) return;
    stream.close(constants.NGHTTP2_CANCEL);
    await Promise.race([closed, after(1_000)]);
  } finally {
    for (const t of timers) clearTimeout(t);
  }
}
