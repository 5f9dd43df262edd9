// The store port's contract (src/store/port.ts), one suite for every
// implementation: the memory store in the unit tier, SdkStore and LeanStore
// against MinIO in the integration tier. What the engine relies on is asserted
// here byte for byte, so a store that answers differently fails here first.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { PluginError } from "../../src/errors.js";
import type { BodySink, GetAnswer, Store } from "../../src/store/port.js";
import { crc32, crc32ToBase64 } from "../../src/transfer/crc32.js";

const MiB = 1024 * 1024;

/** A sink over one buffer of `size` bytes, handing it out in pieces of at most `piece`. */
function bufferSink(size: number, piece = 64 * 1024): { sink: BodySink; filled: () => Buffer } {
  const buf = Buffer.alloc(size);
  let at = 0;
  return {
    sink: {
      space: () => buf.subarray(at, Math.min(size, at + piece)),
      took: (n) => {
        at += n;
        return undefined;
      },
    },
    filled: () => buf.subarray(0, at),
  };
}

/** GET `key` (or a range of it) into a buffer of the announced size. */
async function get(
  store: Store,
  key: string,
  range?: [number, number],
  ifMatch?: string,
  signal?: AbortSignal,
): Promise<{ answer: GetAnswer; body: Buffer }> {
  let filled: (() => Buffer) | undefined;
  const answer = await store.getInto(
    key,
    { Range: range ? `bytes=${range[0]}-${range[1]}` : undefined, IfMatch: ifMatch },
    { signal },
    (a) => {
      const s = bufferSink(a.ContentLength ?? 64 * MiB);
      filled = s.filled;
      return s.sink;
    },
  );
  return { answer, body: filled!() };
}

const b64crc = (b: Buffer) => crc32ToBase64(crc32(b));

/**
 * Defines the contract's tests for the store `make()` returns. Each test uses keys under its own
 * prefix, so one store (one bucket) serves them all. `name` says which implementation this is.
 */
export function storeContract(name: string, make: () => Store): void {
  describe(`store contract: ${name}`, () => {
    const prefix = `contract-${randomBytes(4).toString("hex")}/`;
    const k = (s: string) => `${prefix}${s}`;

    it("put then head and get: the same bytes, size and ETag; a range is the bytes asked for", async () => {
      const store = make();
      const data = randomBytes(300_001);
      expect((await store.put(k("a.bin"), data, b64crc(data), {})).unencrypted).toBeUndefined();
      const head = await store.head(k("a.bin"), true, {});
      expect(head.size).toBe(data.length);
      expect(head.etag).toMatch(/^".+"$/);
      // A CRC32, when reported, is the object's own.
      if (head.crc32 !== undefined) expect(head.crc32).toBe(b64crc(data));
      const whole = await get(store, k("a.bin"));
      expect(whole.body.equals(data)).toBe(true);
      expect(whole.answer.ContentLength).toBe(data.length);
      expect(whole.answer.ETag).toBe(head.etag);
      const part = await get(store, k("a.bin"), [1000, 70_999], head.etag);
      expect(part.body.equals(data.subarray(1000, 71_000))).toBe(true);
      expect(part.answer.ContentRange).toBe(`bytes 1000-70999/${data.length}`);
    });

    it("a missing key is not-found, naming the bucket, the key and the endpoint", async () => {
      const store = make();
      const missing = k("nothing-here");
      for (const attempt of [() => store.head(missing, false, {}), () => get(store, missing)]) {
        const e = await attempt().then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(e).toBeInstanceOf(PluginError);
        expect((e as PluginError).kind).toBe("not-found");
        expect((e as PluginError).message).toContain(store.location(missing));
      }
    });

    it("a GET pinned to another ETag fails with 412 and delivers no byte", async () => {
      const store = make();
      const data = randomBytes(10_000);
      await store.put(k("pinned"), data, b64crc(data), {});
      let offered = 0;
      const e = await store
        .getInto(k("pinned"), { IfMatch: '"0123456789abcdef0123456789abcdef"' }, {}, () => ({
          space: () => Buffer.alloc(1024),
          took: (n) => ((offered += n), undefined),
        }))
        .then(
          () => undefined,
          (x: unknown) => x,
        );
      expect(e).toMatchObject({ kind: "storage", status: 412 });
      expect(offered).toBe(0);
    });

    it("a PUT whose CRC32 does not match its body is refused and stores nothing", async () => {
      const store = make();
      const data = randomBytes(5000);
      await expect(store.put(k("bad-crc"), data, b64crc(Buffer.from("other")), {})).rejects.toMatchObject({
        kind: "storage",
        status: 400,
      });
      await expect(store.head(k("bad-crc"), false, {})).rejects.toMatchObject({ kind: "not-found" });
    });

    it("multipart: parts in, listed while pending, completed with the full object's CRC32 into one object", async () => {
      const store = make();
      const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(123_457)];
      const key = k("multi.bin");
      const up = await store.createUpload(key, true, { single: true });
      expect(up.uploadId).toBeTruthy();
      const id = up.uploadId!;
      expect((await store.pendingUploads(key, {})).map((u) => u.uploadId)).toContain(id);
      expect(await store.hasParts(key, id, {})).toBe(false);
      const done = [];
      for (const [i, body] of parts.entries()) {
        const stored = await store.uploadPart(key, id, i + 1, body, b64crc(body), {});
        expect(stored.etag).toBeTruthy();
        done.push({ partNumber: i + 1, etag: stored.etag, crc32: b64crc(body) });
      }
      expect(await store.hasParts(key, id, {})).toBe(true);
      const all = Buffer.concat(parts);
      expect((await store.completeUpload(key, id, done, b64crc(all), {})).unencrypted).toBeUndefined();
      expect((await store.pendingUploads(key, {})).map((u) => u.uploadId)).not.toContain(id);
      expect((await get(store, key)).body.equals(all)).toBe(true);
      const head = await store.head(key, true, {});
      expect(head.size).toBe(all.length);
      if (head.crc32 !== undefined && head.checksumType === "FULL_OBJECT") expect(head.crc32).toBe(b64crc(all));
    });

    it("an aborted upload is gone: not pending, no object; a second abort finds nothing to abort", async () => {
      const store = make();
      const key = k("aborted.bin");
      const { uploadId } = await store.createUpload(key, true, {});
      const body = randomBytes(5 * MiB);
      await store.uploadPart(key, uploadId!, 1, body, b64crc(body), {});
      await store.abortUpload(key, uploadId!, {});
      expect((await store.pendingUploads(key, {})).map((u) => u.uploadId)).not.toContain(uploadId);
      await expect(store.head(key, false, {})).rejects.toMatchObject({ kind: "not-found" });
      // AWS answers NoSuchUpload, MinIO 204 again: either way nothing is left (the engine's abort accepts both).
      const again = await store.abortUpload(key, uploadId!, {}).then(
        () => "done",
        (e: unknown) => (e as { code?: string }).code,
      );
      expect(["done", "NoSuchUpload"]).toContain(again);
    });

    it("listing: pages of at most maxKeys in key order, only under the prefix, every key once", async () => {
      const store = make();
      const under = k("list/");
      const keys = ["b", "a/x", "a/y", "c d", "é"].map((s) => under + s);
      for (const key of [...keys, k("listed-not")]) await store.put(key, Buffer.from(key), undefined, {});
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await store.listPage(under, token, 2, {});
        expect(page.objects.length).toBeLessThanOrEqual(2);
        for (const o of page.objects) expect(o.size).toBe(Buffer.byteLength(o.key));
        seen.push(...page.objects.map((o) => o.key));
        token = page.next;
        pages++;
      } while (token && pages < 10);
      expect(seen).toEqual([...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
      expect(pages).toBe(3);
    });

    it("delete: one key, then a batch; deleting a missing key is not an error", async () => {
      const store = make();
      const keys = [k("del/1"), k("del/2"), k("del/3")];
      for (const key of keys) await store.put(key, Buffer.from("x"), undefined, {});
      await store.deleteObject(keys[0]!, {});
      await store.deleteObject(k("del/never-was"), {});
      expect(await store.deleteObjects(keys.slice(1), k("del/"), {})).toEqual([]);
      expect((await store.listPage(k("del/"), undefined, 10, {})).objects).toEqual([]);
    });

    it("a call whose signal has fired ends as cancelled, naming the object", async () => {
      const store = make();
      const data = randomBytes(1000);
      await store.put(k("cancel"), data, undefined, {});
      const ctl = new AbortController();
      ctl.abort(new Error("caller left"));
      await expect(get(store, k("cancel"), undefined, undefined, ctl.signal)).rejects.toMatchObject({
        kind: "cancelled",
      });
      const e = store.cancelled("GetObject", k("cancel"), ctl.signal);
      expect(e.kind).toBe("cancelled");
      expect(e.message).toContain(store.location(k("cancel")));
    });
  });
}
