// Streams a prefix listing page by page: callers iterate, so a prefix with a
// million keys never becomes a million-entry array in the plugin.
import type { ListedObject, StoreTarget } from "../store/port.js";

export type { ListedObject };

/** S3's own page size, asked for explicitly so that a page can be held to it. */
const PAGE_KEYS = 1000;

export async function* listPrefix(
  target: StoreTarget,
  prefix: string,
  signal: AbortSignal,
  maxKeys?: number,
): AsyncGenerator<ListedObject> {
  let token: string | undefined;
  do {
    const page = await target.store.listPage(prefix, token, maxKeys ?? PAGE_KEYS, { signal });
    yield* page.objects;
    token = page.next;
  } while (token && maxKeys === undefined);
}

/** True when at least one object exists under `prefix`. */
export async function anyUnder(target: StoreTarget, prefix: string, signal: AbortSignal): Promise<boolean> {
  for await (const _ of listPrefix(target, prefix, signal, 1)) return true;
  return false;
}
