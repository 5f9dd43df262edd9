// TypeScript shapes of the proto messages as @grpc/proto-loader delivers them
// (camelCase fields, defaults filled in, bytes as Buffer). Kept by hand beside
// proto/artifact.proto; test/proto-contract.test.ts checks the proto itself
// against Argo's field table.
import type {
  UntypedServiceImplementation,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
} from "@grpc/grpc-js";

export interface PluginArtifactMsg {
  name: string;
  configuration: string;
  connectionTimeoutSeconds: number;
  key: string;
}

export interface ArtifactMsg {
  name: string;
  path: string;
  mode: number;
  from: string;
  plugin: PluginArtifactMsg | null;
  optional: boolean;
  subPath: string;
  recurseMode: boolean;
  fromExpression: string;
  deleted: boolean;
}

export interface LoadArtifactRequest {
  inputArtifact: ArtifactMsg | null;
  path: string;
}
export interface SaveArtifactRequest {
  path: string;
  outputArtifact: ArtifactMsg | null;
}
export interface ArtifactOnlyRequest {
  artifact: ArtifactMsg | null;
}
export interface SaveStreamArtifactRequest {
  outputArtifact: ArtifactMsg | null;
  chunk: Buffer;
}

export interface SuccessResponse {
  success: boolean;
  error: string;
}
export interface OpenStreamResponse {
  data?: Buffer;
  isEnd?: boolean;
  error?: string;
  /** Not on the wire: `data` has room in front to be encoded in place (util/headroom.ts). */
  inPlace?: boolean;
}
export interface ListObjectsResponse {
  objects: string[];
  error: string;
}
export interface IsDirectoryResponse {
  isDirectory: boolean;
  error: string;
}
export type GetCapabilitiesRequest = Record<string, never>;
export interface GetCapabilitiesResponse {
  supportsSaveStream: boolean;
}

/**
 * The service's handlers, method by method, in grpc-js' typed handler types with the messages
 * above (proto/artifact.proto's `service ArtifactService`): a handler of the wrong kind or with the
 * wrong message types does not compile.
 */
export interface ArtifactServiceHandlers extends UntypedServiceImplementation {
  Load: handleUnaryCall<LoadArtifactRequest, SuccessResponse>;
  OpenStream: handleServerStreamingCall<ArtifactOnlyRequest, OpenStreamResponse>;
  Save: handleUnaryCall<SaveArtifactRequest, SuccessResponse>;
  SaveStream: handleClientStreamingCall<SaveStreamArtifactRequest, SuccessResponse>;
  Delete: handleUnaryCall<ArtifactOnlyRequest, SuccessResponse>;
  ListObjects: handleUnaryCall<ArtifactOnlyRequest, ListObjectsResponse>;
  IsDirectory: handleUnaryCall<ArtifactOnlyRequest, IsDirectoryResponse>;
  GetCapabilities: handleUnaryCall<GetCapabilitiesRequest, GetCapabilitiesResponse>;
}
