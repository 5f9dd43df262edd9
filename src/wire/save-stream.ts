// SaveStream: the first frame carries the artifact, the rest 2 MiB chunks.
// The call is read one message ahead at most, so HTTP/2 flow control holds
// the client back while the part queue is full.
import type { ServerReadableStream, sendUnaryData } from "@grpc/grpc-js";
import type { ArtifactOps } from "../artifacts/ops.js";
import { PluginError } from "../errors.js";
import { limitReadAhead } from "./flow-control.js";
import type { ArtifactServiceHandlers, SaveStreamArtifactRequest, SuccessResponse } from "./messages.js";
import { type Track, artifactRef } from "./rpc.js";
import { invalid } from "./status.js";
import { withIdleLimit } from "./stream-waits.js";
import { reply } from "./unary.js";

export function saveStreamHandler(
  svc: ArtifactOps,
  track: Track,
  idleMs: number,
): ArtifactServiceHandlers["SaveStream"] {
  return (
    call: ServerReadableStream<SaveStreamArtifactRequest, SuccessResponse>,
    callback: sendUnaryData<SuccessResponse>,
  ): void => {
    const cancelled = () => new PluginError("cancelled", "SaveStream: cancelled by the client");
    reply(
      track("SaveStream", call, async (rpc, log) => {
        const { signal } = rpc;
        limitReadAhead(call, 1);
        const it = (call as AsyncIterable<SaveStreamArtifactRequest>)[Symbol.asyncIterator]();
        const first = await withIdleLimit(
          it.next(),
          idleMs,
          () => new PluginError("cancelled", `SaveStream: no first frame within ${idleMs / 1000} s`),
        );
        if (first.done) throw invalid("SaveStream: the stream ended before its first (metadata) frame");
        const ref = artifactRef(first.value.outputArtifact, "output_artifact (first SaveStream frame)", log);
        const head = first.value.chunk;
        const stalled = () =>
          new PluginError(
            "cancelled",
            `SaveStream to key "${ref.key}": the client sent no data for ${idleMs / 1000} s; upload aborted`,
          );
        async function* chunks(): AsyncGenerator<Buffer> {
          if (head && head.length > 0) yield head;
          // The idle limit runs from the last byte of data, not the last frame: empty chunks are not progress.
          let lastData = Date.now();
          for (;;) {
            let next: IteratorResult<SaveStreamArtifactRequest>;
            try {
              next = await withIdleLimit(it.next(), Math.max(0, lastData + idleMs - Date.now()), stalled);
            } catch (e) {
              // A client that cancels (or hits its deadline) mid-stream surfaces here as a
              // premature close of the call: report it as the cancellation it is.
              if (signal.aborted || call.cancelled || (e as { code?: string }).code === "ERR_STREAM_PREMATURE_CLOSE")
                throw cancelled();
              throw e;
            }
            if (next.done) break;
            if (next.value.chunk && next.value.chunk.length > 0) {
              yield next.value.chunk;
              lastData = Date.now();
            }
          }
          // A cancelled client stream can look like a clean end: never complete a truncated upload.
          if (signal.aborted || call.cancelled) throw cancelled();
        }
        const { on, call: admitted } = await rpc.admit(ref);
        Object.assign(log, await svc.saveStream(on, chunks(), admitted));
        return { success: true, error: "" };
      }),
      callback,
      (error) => ({ success: false, error }),
    );
  };
}
