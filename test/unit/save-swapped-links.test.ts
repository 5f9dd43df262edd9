// A directory Save walks the tree, then opens each file to upload it. In a
// workflow pod the main container can still change the tree in between: a
// file swapped for a symbolic link, or a directory on the way swapped for one,
// must not make the plugin upload what the link points at (its own files, a
// service-account token). The open refuses a final link and checks that what
// it opened is inside the directory being saved. In-process: the refusal comes
// before any S3 request, so the store is never asked.
import {
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  renameSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { DEFAULT_TUNING } from "../../src/config/types.js";
import type { S3Target } from "../../src/s3/targets.js";
import { TransferEngine } from "../../src/transfer/engine.js";
import { tally } from "../support/ledger.js";

const base = mkdtempSync(join(tmpdir(), "swap-"));
const outside = join(base, "outside");
const root = join(base, "out");
mkdirSync(outside);
writeFileSync(join(outside, "token"), "plugin container secret");
mkdirSync(join(root, "sub"), { recursive: true });
writeFileSync(join(root, "a.txt"), "a");
writeFileSync(join(root, "sub", "b.txt"), "b");
const realRoot = realpathSync(root);
// Never used: every case here is refused before the first S3 request.
const noStore = new Proxy(
  {},
  {
    get: () => {
      throw new Error("the store was reached");
    },
  },
);
const job = new TransferEngine().job({
  cfg: { tuning: DEFAULT_TUNING },
  store: noStore,
  encryption: noStore,
} as unknown as S3Target);
const signal = new AbortController().signal;

afterAll(() => rmSync(base, { recursive: true, force: true }));

it("refuses a file swapped for a symbolic link after the walk", async () => {
  unlinkSync(join(root, "a.txt"));
  symlinkSync(join(outside, "token"), join(root, "a.txt"));
  tally({ suite: "hostile: files swapped for links during a Save", hostileTried: 1 });
  await expect(job.uploadFile("k/a.txt", join(root, "a.txt"), signal, realRoot)).rejects.toThrow(
    /replaced by a symbolic link/,
  );
  tally({ suite: "hostile: files swapped for links during a Save", hostileRefused: 1 });
});

it("refuses a file whose directory was swapped for a link to somewhere else", async () => {
  renameSync(join(root, "sub"), join(base, "sub-moved"));
  writeFileSync(join(outside, "b.txt"), "outside b");
  symlinkSync(outside, join(root, "sub"));
  tally({ suite: "hostile: files swapped for links during a Save", hostileTried: 1 });
  await expect(job.uploadFile("k/sub/b.txt", join(root, "sub", "b.txt"), signal, realRoot)).rejects.toThrow(
    /outside the directory being saved/,
  );
  tally({ suite: "hostile: files swapped for links during a Save", hostileRefused: 1 });
});

it("refuses what is no longer a regular file", async () => {
  mkdirSync(join(root, "c.txt"));
  tally({ suite: "hostile: files swapped for links during a Save", hostileTried: 1 });
  await expect(job.uploadFile("k/c.txt", join(root, "c.txt"), signal, realRoot)).rejects.toThrow(/not a regular file/);
  tally({ suite: "hostile: files swapped for links during a Save", hostileRefused: 1 });
});
