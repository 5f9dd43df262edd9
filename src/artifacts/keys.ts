// Key ↔ path mapping with Argo's rules, and the checks that keep a hostile or
// odd listing from writing outside the Load target.
import { posix, resolve, sep } from "node:path";
import { PluginError } from "../errors.js";

/** Go's filepath.Clean(key) + "/", as Argo's S3 driver forms a directory prefix; "" stays "". */
export function directoryPrefix(key: string): string {
  if (key === "") return "";
  const cleaned = posix.normalize(key).replace(/\/+$/, "");
  return cleaned === "" ? "/" : `${cleaned}/`;
}

/** Object key of a file at `rel` (POSIX, relative) inside a directory artifact at `key`. */
export function keyForFile(key: string, rel: string): string {
  return key === "" ? rel : posix.join(key, rel);
}

const MAX_NAME_BYTES = 255;

/**
 * The local path for an object found under a directory prefix, or an error
 * naming the key when its remainder could escape `root` or cannot be a file name.
 */
export function localPathFor(root: string, prefix: string, objectKey: string): string {
  const rel = objectKey.slice(prefix.length);
  const refuse = (why: string): never => {
    throw new PluginError("local", `refusing to load object "${objectKey}" into ${root}: ${why}`);
  };
  if (rel === "") refuse("empty relative path");
  if (rel.includes("\0")) refuse("key contains a NUL byte");
  if (rel.includes("\\")) refuse("key contains a backslash");
  if (rel.startsWith("/")) refuse("relative part is absolute");
  for (const seg of rel.split("/")) {
    if (seg === "..") refuse('key contains a ".." segment');
    // "a//b", "a/./b" and "a/b" are three keys but one file: loaded concurrently they would
    // mix into it. Only the plain form maps to a file, so no two keys share one.
    if (seg === "" || seg === ".")
      refuse(
        `key has an ${seg === "" ? 'empty ("//")' : '"."'} path segment, so it names the same file as another key would (a/b, a//b and a/./b are one file); rename the object`,
      );
    if (Buffer.byteLength(seg) > MAX_NAME_BYTES) refuse(`a path segment is longer than ${MAX_NAME_BYTES} bytes`);
  }
  const rootAbs = resolve(root);
  const full = resolve(rootAbs, rel);
  if (!full.startsWith(rootAbs + sep)) refuse("resolves outside the target directory");
  return full;
}
