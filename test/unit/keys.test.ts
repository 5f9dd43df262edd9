// Key ↔ path mapping (Argo's prefix rules, and the refusals that keep a hostile
// listing from writing outside a Load target) and the part-size arithmetic that
// keeps every upload within S3's 10,000-part limit.
import { isAbsolute, join, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { directoryPrefix, keyForFile, localPathFor } from "../../src/artifacts/keys.js";
import { PluginError } from "../../src/errors.js";
import { MAX_PARTS, MIN_PART_SIZE, partSizeFor } from "../../src/transfer/multipart.js";
import { streamPartSize } from "../../src/transfer/upload.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

describe('directoryPrefix (Go\'s filepath.Clean(key) + "/")', () => {
  it.each([
    ["", ""], // bucket root stays the whole bucket
    ["a", "a/"],
    ["a/b", "a/b/"],
    ["a/b/", "a/b/"],
    ["a/b//", "a/b/"],
    ["a//b", "a/b/"],
    ["./a", "a/"],
    ["a/./b", "a/b/"],
    ["a/x/../b", "a/b/"],
    ["/a/b", "/a/b/"],
    ["//a", "/a/"],
    [".", "./"],
    ["a/..", "./"],
    ["../a", "../a/"],
  ])("%j → %j", (key, prefix) => {
    expect(directoryPrefix(key)).toBe(prefix);
  });
});

describe("keyForFile", () => {
  it("joins the artifact key and the relative path", () => {
    expect(keyForFile("out/dir", "a/b.txt")).toBe("out/dir/a/b.txt");
    expect(keyForFile("out/dir/", "b.txt")).toBe("out/dir/b.txt");
    expect(keyForFile("", "a/b.txt")).toBe("a/b.txt");
  });
});

describe("localPathFor", () => {
  const root = resolve("/tmp/load-target");

  /** The PluginError thrown for `objectKey`, which must name the key. */
  function refusal(objectKey: string, prefix = "dir/"): PluginError {
    let caught: unknown;
    try {
      localPathFor(root, prefix, objectKey);
    } catch (e) {
      caught = e;
    }
    expect(caught, `expected ${JSON.stringify(objectKey)} to be refused`).toBeInstanceOf(PluginError);
    const err = caught as PluginError;
    expect(err.kind).toBe("local");
    expect(err.message).toContain(`"${objectKey}"`);
    return err;
  }

  it("maps nested keys to absolute paths inside the root", () => {
    const p = localPathFor(root, "dir/", "dir/a/b/c.txt");
    expect(p).toBe(join(root, "a", "b", "c.txt"));
    expect(isAbsolute(p)).toBe(true);
    expect(p.startsWith(root + sep)).toBe(true);
    expect(localPathFor(root, "dir/", "dir/file")).toBe(join(root, "file"));
    expect(localPathFor(root, "", "top.txt")).toBe(join(root, "top.txt"));
  });

  it("refuses keys that name the same file as another key (a//b, a/./b beside a/b): two objects never mix into one file", () => {
    for (const k of ["dir/a//b", "dir/a/./b", "dir/./a", "dir/a/b//c", "dir/a/."]) {
      expect(refusal(k).message).toMatch(/names the same file as another key would .*rename the object/);
    }
    expect(localPathFor(root, "dir/", "dir/a/b")).toBe(join(root, "a", "b"));
    expect(localPathFor(root, "dir/", "dir/a.b/.c")).toBe(join(root, "a.b", ".c"));
  });

  it("returns an absolute path for a relative root", () => {
    const p = localPathFor("rel-root", "k/", "k/x/y");
    expect(isAbsolute(p)).toBe(true);
    expect(p).toBe(resolve("rel-root", "x", "y"));
  });

  it("accepts a 255-byte segment", () => {
    const name = "a".repeat(255);
    expect(localPathFor(root, "dir/", `dir/${name}`)).toBe(join(root, name));
  });

  it("refuses '..' segments", () => {
    expect(refusal("dir/../etc/passwd").message).toContain("..");
    refusal("dir/a/../../x");
    refusal("dir/a/..");
    refusal("dir/..");
  });

  it("refuses a leading '/' in the remainder", () => {
    refusal("dir//etc/passwd");
    refusal("/etc/passwd", "");
  });

  it("refuses backslashes", () => {
    expect(refusal("dir/a\\b").message).toContain("backslash");
    refusal("dir/..\\..\\x");
  });

  it("refuses NUL bytes", () => {
    expect(refusal("dir/a\0b").message).toContain("NUL");
  });

  it("refuses a segment longer than 255 bytes (bytes, not characters)", () => {
    refusal(`dir/${"a".repeat(256)}`);
    // 128 characters, 256 bytes in UTF-8.
    refusal(`dir/sub/${"é".repeat(128)}/f`);
  });

  it("refuses an empty remainder (the prefix itself)", () => {
    refusal("dir/");
  });

  it("refuses a remainder that resolves to the root itself", () => {
    refusal("dir/.");
  });

  // Further hostile shapes: deeper climbs, Windows-style paths, NUL anywhere, over-long names.
  it("refuses prefix/../../x and deeper climbs", () => {
    refusal("dir/../../x");
    refusal("dir/../../../../../../etc/passwd");
    refusal("dir/a/b/../../../x");
    refusal("../x", "");
    refusal("a/../../x", "");
  });

  it("refuses absolute remainders, also with an empty prefix and after several slashes", () => {
    refusal("/etc/passwd", "");
    refusal("//etc/passwd", "");
    refusal("dir///x");
    refusal("dir//tmp/other");
  });

  it("refuses backslashes wherever they are (Windows-style traversal and drive paths)", () => {
    refusal("dir\\..\\x", "");
    refusal("dir/..\\..\\..\\etc\\passwd");
    refusal("dir/C:\\Windows\\x");
    refusal("dir/sub/trailing\\");
  });

  it("refuses NUL bytes at the start, middle and end", () => {
    refusal("dir/\0");
    refusal("dir/\0x");
    refusal("dir/x\0");
    refusal("dir/a/\0/b");
    refusal("dir/x\0/../../y");
  });

  it("refuses over-long names; accepts a long path made of allowed segments, still inside the root", () => {
    refusal(`dir/${"n".repeat(1000)}`);
    refusal(`dir/ok/${"n".repeat(64 * 1024)}/f`);
    refusal(`dir/${"😀".repeat(64)}`); // 64 characters, 256 bytes
    const longPath = Array.from({ length: 40 }, () => "s".repeat(200)).join("/");
    const p = localPathFor(root, "dir/", `dir/${longPath}`);
    expect(p.startsWith(root + sep)).toBe(true);
    expect(p).toBe(join(root, ...longPath.split("/")));
  });

  it("maps names that only look like traversal to paths inside the root", () => {
    expect(localPathFor(root, "dir/", "dir/..a")).toBe(join(root, "..a"));
    expect(localPathFor(root, "dir/", "dir/a..")).toBe(join(root, "a.."));
    expect(localPathFor(root, "dir/", "dir/...")).toBe(join(root, "..."));
    expect(localPathFor(root, "dir/", "dir/ ../x")).toBe(join(root, " ..", "x"));
  });
});

describe("partSizeFor", () => {
  const sizes = [
    0,
    1,
    5 * MiB,
    100 * MiB,
    10 * GiB,
    48 * GiB,
    49 * GiB,
    100 * GiB,
    1 * TiB,
    3 * TiB + 12345,
    5 * TiB - 1,
    5 * TiB,
  ];

  it.each(sizes)("size %d: ≥ 5 MiB, ≥ configured, whole MiB, ≤ 10,000 parts", (size) => {
    for (const configured of [0, 5 * MiB, 8 * MiB, 16 * MiB, 5.5 * MiB, 100 * MiB + 1]) {
      const part = partSizeFor(size, configured);
      expect(part).toBeGreaterThanOrEqual(MIN_PART_SIZE);
      expect(part).toBeGreaterThanOrEqual(configured);
      expect(part % MiB).toBe(0);
      expect(Math.ceil(size / part)).toBeLessThanOrEqual(MAX_PARTS);
    }
  });

  it("keeps the configured size while it suffices, grows it only when needed", () => {
    expect(partSizeFor(1 * GiB, 16 * MiB)).toBe(16 * MiB);
    expect(partSizeFor(1, 1)).toBe(5 * MiB);
    expect(partSizeFor(10 * MiB, 5.5 * MiB)).toBe(6 * MiB);
    // 200 GiB / 16 MiB = 12,800 parts: too many, so the part grows to ceil(200 GiB / 10,000) rounded up to MiB.
    expect(partSizeFor(200 * GiB, 16 * MiB)).toBe(21 * MiB);
    // 5 TiB needs 524.288 MiB parts → 525 MiB.
    expect(partSizeFor(5 * TiB, 16 * MiB)).toBe(525 * MiB);
  });

  it("has S3's limits as constants", () => {
    expect(MIN_PART_SIZE).toBe(5 * MiB);
    expect(MAX_PARTS).toBe(10_000);
  });
});

describe("streamPartSize", () => {
  const base = 8 * MiB;

  it("doubles every 2,500 parts", () => {
    expect(streamPartSize(1, base)).toBe(base);
    expect(streamPartSize(2500, base)).toBe(base);
    expect(streamPartSize(2501, base)).toBe(2 * base);
    expect(streamPartSize(5000, base)).toBe(2 * base);
    expect(streamPartSize(5001, base)).toBe(4 * base);
    expect(streamPartSize(7500, base)).toBe(4 * base);
    expect(streamPartSize(7501, base)).toBe(8 * base);
    expect(streamPartSize(10_000, base)).toBe(8 * base);
  });

  it("lets 10,000 parts at an 8 MiB base carry more than 250 GiB", () => {
    let total = 0;
    for (let n = 1; n <= MAX_PARTS; n++) total += streamPartSize(n, base);
    expect(total).toBeGreaterThan(250 * GiB);
    expect(total).toBe(2500 * base * (1 + 2 + 4 + 8));
  });

  it("is never below the base and never shrinks", () => {
    let prev = 0;
    for (let n = 1; n <= MAX_PARTS; n++) {
      const s = streamPartSize(n, MIN_PART_SIZE);
      expect(s).toBeGreaterThanOrEqual(Math.max(prev, MIN_PART_SIZE));
      prev = s;
    }
  });
});
