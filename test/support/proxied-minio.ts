// The bed several integration files share: a real MinIO, the fault proxy in
// front of it, the plugin process with MinIO's root keys, and a scratch
// directory; `stop` checks the plugin exits 0 and removes everything.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { type FaultProxy, startFaultProxy } from "./fault-proxy.js";
import { adminClient, rootKeysEnv } from "./minio-access.js";
import { type PluginProcess, startPlugin } from "./plugin.js";

export interface ProxiedMinio {
  minio: MinioServer;
  proxy: FaultProxy;
  plugin: PluginProcess;
  work: string;
  /** Resolves with the plugin's exit code. */
  stop(): Promise<number | null>;
}

/** `bucket`: created in MinIO first, when given. */
export async function startProxiedMinio(name: string, bucket?: string): Promise<ProxiedMinio> {
  const minio = await startMinio();
  if (bucket) await adminClient(minio).send(new CreateBucketCommand({ Bucket: bucket }));
  const proxy = await startFaultProxy(minio.port);
  const plugin = await startPlugin(rootKeysEnv(minio));
  const work = mkdtempSync(join(tmpdir(), `${name}-`));
  return {
    minio,
    proxy,
    plugin,
    work,
    stop: async () => {
      const code = await plugin.stop();
      await proxy.stop();
      await minio.stop();
      rmSync(work, { recursive: true, force: true });
      return code;
    },
  };
}
