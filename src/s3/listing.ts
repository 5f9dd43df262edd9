// Streams a prefix listing page by page: callers iterate, so a prefix with a
// million keys never becomes a million-entry array in the plugin.
import { PluginError } from "../errors.js";
import type { S3Target } from "./client.js";

export interface ListedObject {
  key: string;
  size: number;
  etag: string | undefined;
}

/** S3's own page size, asked for explicitly so that a page can be held to it. */
const PAGE_KEYS = 1000;

export async function* listPrefix(
  target: S3Target,
  prefix: string,
  signal: AbortSignal,
  maxKeys?: number,
): AsyncGenerator<ListedObject> {
  let token: string | undefined;
  const asked = maxKeys ?? PAGE_KEYS;
  do {
    const page = await target.store.listObjects(prefix, token, asked, { signal });
    const got = (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
    if (got > asked) {
      throw new PluginError(
        "storage",
        `ListObjectsV2 ${target.store.location(prefix)}: the store answered ${got} keys where at most ${asked} were asked for; refused (is the endpoint an S3 server?)`,
      );
    }
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
