// The unary RPCs: each runs one service call under the tracker and answers
// with its result, or through the one error→status mapping.
import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import type { ArtifactOps } from "../artifacts/ops.js";
import type {
  ArtifactOnlyRequest,
  ArtifactServiceHandlers,
  GetCapabilitiesRequest,
  GetCapabilitiesResponse,
  IsDirectoryResponse,
  ListObjectsResponse,
  LoadArtifactRequest,
  SaveArtifactRequest,
  SuccessResponse,
} from "./messages.js";
import { type RpcLog, type Track, type Tracked, artifactRef } from "./rpc.js";
import { invalid, outcomeOf } from "./status.js";

/** Answer a unary call: the result, a gRPC status, or the RPC's own error field. */
export function reply<Res>(p: Promise<Res>, callback: sendUnaryData<Res>, onError: (message: string) => Res): void {
  p.then(
    (res) => callback(null, res),
    (e: unknown) => {
      const out = outcomeOf(e);
      if (out.status !== undefined) callback({ code: out.status, details: out.details });
      else callback(null, onError(out.message));
    },
  );
}

const failed = (error: string): SuccessResponse => ({ success: false, error });

/** The unary methods of the service. */
type UnaryMethods = "Load" | "Save" | "Delete" | "ListObjects" | "IsDirectory" | "GetCapabilities";

export function unaryHandlers(svc: ArtifactOps, track: Track): Pick<ArtifactServiceHandlers, UnaryMethods> {
  const unary =
    <Req, Res>(
      method: string,
      run: (req: Req, rpc: Tracked, log: RpcLog) => Promise<Res>,
      onError: (message: string) => Res,
    ) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) =>
      reply(
        track(method, call, (rpc, log) => run(call.request, rpc, log)),
        callback,
        onError,
      );

  return {
    Load: unary<LoadArtifactRequest, SuccessResponse>(
      "Load",
      async (req, rpc, log) => {
        const ref = artifactRef(req.inputArtifact, "input_artifact", log);
        if (!req.path) throw invalid("Load request has no path");
        const { on, call } = await rpc.admit(ref);
        Object.assign(log, await svc.load(on, req.path, call));
        return { success: true, error: "" };
      },
      failed,
    ),
    Save: unary<SaveArtifactRequest, SuccessResponse>(
      "Save",
      async (req, rpc, log) => {
        const ref = artifactRef(req.outputArtifact, "output_artifact", log);
        if (!req.path) throw invalid("Save request has no path");
        const { on, call } = await rpc.admit(ref);
        Object.assign(log, await svc.save(on, req.path, call));
        return { success: true, error: "" };
      },
      failed,
    ),
    Delete: unary<ArtifactOnlyRequest, SuccessResponse>(
      "Delete",
      async (req, rpc, log) => {
        const { on, call } = await rpc.admit(artifactRef(req.artifact, "artifact", log));
        Object.assign(log, await svc.delete(on, call));
        return { success: true, error: "" };
      },
      failed,
    ),
    ListObjects: unary<ArtifactOnlyRequest, ListObjectsResponse>(
      "ListObjects",
      async (req, rpc, log) => {
        const ref = artifactRef(req.artifact, "artifact", log);
        const { on, call } = await rpc.admit(ref);
        const objects = await svc.listObjects(on, call);
        log.files = objects.length;
        return { objects, error: "" };
      },
      (error) => ({ objects: [], error }),
    ),
    IsDirectory: unary<ArtifactOnlyRequest, IsDirectoryResponse>(
      "IsDirectory",
      async (req, rpc, log) => {
        const ref = artifactRef(req.artifact, "artifact", log);
        const { on, call } = await rpc.admit(ref);
        return { isDirectory: await svc.isDirectory(on, call), error: "" };
      },
      (error) => ({ isDirectory: false, error }),
    ),
    GetCapabilities: (
      _call: ServerUnaryCall<GetCapabilitiesRequest, GetCapabilitiesResponse>,
      callback: sendUnaryData<GetCapabilitiesResponse>,
    ) => {
      callback(null, { supportsSaveStream: true });
    },
  };
}
