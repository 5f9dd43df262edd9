// Streams a prefix listing page by page: callers iterate, so a prefix with a
// million keys never becomes a million-entry array in the plugin.
import type { S3Target } from "./client.js";

export interface ListedObject {
  key: string;
  size: number;
  etag: string | undefined;
}

export async function* listPrefix(target: S3Target, prefix: string, signal: AbortSignal, maxKeys?: number): AsyncGenerator<ListedObject> {
  let token: string | undefined;
  do {
    const page = await target.store.listObjects(prefix, token, maxKeys, { signal });
    for (const o of page.Contents ?? []) {
      if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, etag: o.ETag };
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token && maxKeys === undefined);
}

/** True when at least one object exists under `prefix`. */
export async function anyUnder(target: S3Target, prefix: string, signal: AbortSignal): Promise<boolean> {
  for await (const _ of listPrefix(target, prefix, signal, 1)) return true;
  return false;
}
