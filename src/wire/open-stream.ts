// OpenStream: the object in frames of STREAM_FRAME_BYTES, then an is_end
// frame; an error after the first frame travels as an error frame.
import { type ServerWritableStream, status } from "@grpc/grpc-js";
import type { ArtifactOps } from "../artifacts/ops.js";
import { PluginError } from "../errors.js";
import type { ArtifactOnlyRequest, ArtifactServiceHandlers, OpenStreamResponse } from "./messages.js";
import { type Track, artifactRef } from "./rpc.js";
import { outcomeOf } from "./status.js";
import { untilAborted } from "../util/abortable.js";
import { waitDrain, withIdleLimit } from "./stream-waits.js";
import { hasHeadroom } from "../util/headroom.js";
import { sendFramesInPlace, untilFramesGone } from "./frames-in-place.js";

/** OpenStream frame size: far below grpc-go's 4 MiB default receive limit. */
export const STREAM_FRAME_BYTES = 2 * 1024 * 1024;

/**
 * OpenStream frames written but not yet taken by the transport, per call. grpc-js takes a
 * call's messages one at a time (a Writable: the next is encoded once the one before is
 * written out), so the second waits as an object, its bytes not yet touched.
 */
const FRAMES_IN_FLIGHT = 2;

export function openStreamHandler(
  svc: ArtifactOps,
  track: Track,
  idleMs: number,
): ArtifactServiceHandlers["OpenStream"] {
  return (call: ServerWritableStream<ArtifactOnlyRequest, OpenStreamResponse>): void => {
    track("OpenStream", call, async (rpc, log) => {
      const { signal } = rpc;
      const ref = artifactRef(call.request.artifact, "artifact", log);
      const admitted = await rpc.admit(ref);
      const { bucket, chunks } = await svc.openStream(admitted.on, admitted.call);
      log.bucket = bucket;
      const stalled = () =>
        new PluginError(
          "cancelled",
          `OpenStream s3://${bucket}/${ref.key}: the client took no data for ${idleMs / 1000} s; stream ended to free its buffers`,
        );
      const idle = <T>(p: Promise<T>) => withIdleLimit(p, idleMs, stalled);
      let bytes = 0;
      // Frames wait in the call's queue as views of a range's buffer, which goes
      // back to the budget once the next range is pulled (where grpc-js copies
      // frames, each queued copy is memory outside the budget). So at most
      // FRAMES_IN_FLIGHT frames are outstanding per call, and a range's frames
      // are all written out before the next range is pulled. A slow reader thus
      // stops us reading S3.
      const inFlight: Promise<void>[] = [];
      // Frames whose write has not called back: their bytes may still be read by the transport.
      let unsent = 0;
      let onAllSent: (() => void) | undefined;
      const send = (frame: OpenStreamResponse) =>
        new Promise<void>((resolve) => {
          unsent++;
          call.write(frame, () => {
            if (--unsent === 0) onAllSent?.();
            resolve();
          });
        });
      sendFramesInPlace(call);
      try {
        // Pulled by hand, not with for-await: a loop left by a throw would close the reader at
        // once, giving back a range whose frames may still be queued (see the finally below).
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
          const range = next.value;
          const inPlace = hasHeadroom(range);
          for (let off = 0; off < range.length; off += STREAM_FRAME_BYTES) {
            const data = range.subarray(off, off + STREAM_FRAME_BYTES);
            bytes += data.length;
            if (inFlight.length >= FRAMES_IN_FLIGHT) await idle(untilAborted(inFlight.shift()!, signal));
            const frame: OpenStreamResponse = inPlace ? { data, inPlace } : { data };
            inFlight.push(send(frame));
            if (call.writableNeedDrain) await idle(waitDrain(call, signal));
          }
          while (inFlight.length > 0) await idle(untilAborted(inFlight.shift()!, signal));
        }
      } finally {
        // After a failure mid-stream (the idle limit, the store, a cancellation), frames still
        // queued are sent from the range's buffer, which stays charged to the budget until they
        // are out (the error frame follows them) or the stream is gone: reset after one more idle
        // limit, so a reader that takes nothing holds neither budget nor memory beyond it.
        const allSent = unsent === 0 ? undefined : new Promise<void>((resolve) => (onAllSent = resolve));
        await untilFramesGone(call, allSent, idleMs);
        // Whatever ended the loop, the reader gives its buffers back (see ArtifactService.openStream).
        await chunks.return?.(undefined);
      }
      log.bytes = bytes;
      call.write({ isEnd: true });
    }).then(
      () => call.end(),
      (e: unknown) => {
        const out = outcomeOf(e);
        if (out.status === status.INVALID_ARGUMENT) {
          // emit, not destroy: grpc-js sends the status from its 'error' handler; a destroyed call never sends one.
          call.emit("error", Object.assign(new Error(out.details), { code: out.status, details: out.details }));
          return;
        }
        if (!call.cancelled) {
          call.write({ error: out.status === undefined ? out.message : out.details });
          call.end();
        }
      },
    );
  };
}
