// Directories of a Load into a target that existed before the call. The target
// may already hold symbolic links (left by an earlier step, or planted); a
// recursive mkdir would follow them and the load would write outside the
// target. So each missing directory is made one level at a time, and a level
// that is a link (or not a directory) is refused. A target the plugin created
// itself holds no links, and keeps the cheap recursive mkdir.
import { lstat, mkdir } from "node:fs/promises";
import { relative, sep, join } from "node:path";
import { PluginError } from "../errors.js";

/** Makes `dir` (lexically inside `root`, see localPathFor) without following any link below `root`. */
export async function mkdirInside(root: string, dir: string): Promise<void> {
  const rel = relative(root, dir);
  if (rel === "") return;
  let at = root;
  for (const segment of rel.split(sep)) {
    at = join(at, segment);
    let st = await lstat(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (st === undefined) {
      // Another file of the same load may make it first.
      await mkdir(at).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "EEXIST") throw e;
      });
      st = await lstat(at);
    }
    if (st.isSymbolicLink())
      throw new PluginError(
        "local",
        `refusing to load into ${dir}: ${at} is a symbolic link, and following it could write outside the target directory ${root}`,
      );
    if (!st.isDirectory())
      throw new PluginError("local", `cannot load into ${dir}: ${at} exists and is not a directory`);
  }
}
