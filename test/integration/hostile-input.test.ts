// Hostile input through the real plugin process: broken and abusive
// configuration text, directories full of symbolic links, listings whose keys
// try to escape the Load target (MinIO cannot hold such keys, so a proxy in
// front of it rewrites its listing), Load targets that already hold links or
// files that a failed Load must not damage, and the socket's file mode.
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, sep } from "node:path";
import { CreateBucketCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { stopAndScan, tally } from "../support/ledger.js";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
const BUCKET = "hostile";
const PASSWORD = "Pa55-never-print-me-7f3a";

const config = (extra = "") =>
  `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\n${extra}`;

/** Every file (not directory) below `dir`, as sorted POSIX relative paths; symlinks listed as "<path> -> link". */
function tree(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const rel = join(e.parentPath, e.name)
      .slice(dir.length + 1)
      .split(sep)
      .join("/");
    if (e.isSymbolicLink()) out.push(`${rel} -> link`);
    else if (!e.isDirectory()) out.push(rel);
  }
  return out.sort();
}

async function expectServing(): Promise<void> {
  expect(plugin.proc.exitCode).toBeNull();
  expect(await plugin.client.getCapabilities()).toEqual({ supportsSaveStream: true });
  expect(await plugin.client.isDirectory(artifact(config(), "nothing-here"))).toEqual({
    isDirectory: false,
    error: "",
  });
}

beforeAll(async () => {
  minio = await startMinio();
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  proxy = await startFaultProxy(minio.port);
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "hostile-"));
});

afterAll(async () => {
  await stopAndScan("hostile input", plugin, {
    "MinIO root secret key": minio?.secretKey,
    "endpoint password": PASSWORD,
  });
  await proxy?.stop();
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("hostile configuration", () => {
  const aliasBomb = [
    "bucket: &a [x, x, x, x, x, x, x, x, x]",
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]",
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]",
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]",
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]",
    "i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]",
  ].join("\n");

  // [label, configuration, text the error must contain (the field and why)]
  const cases: Array<[string, () => string, string[]]> = [
    ["malformed YAML", () => `bucket: [unclosed\nendpoint: ${minio.endpoint}\n`, ["(configuration)", "not valid YAML"]],
    ["a tab-indented mapping", () => "bucket: b\ntuning:\n\tpartSizeMiB: 5\n", ["(configuration)", "YAML"]],
    ["a list instead of a mapping", () => "- bucket: b\n", ["(configuration)", "expected a mapping"]],
    ["a bare scalar", () => "just-a-string", ["(configuration)", "expected a mapping"]],
    [
      "bucket of the wrong type",
      () => config().replace(`bucket: ${BUCKET}`, "bucket: 5"),
      ["bucket", "expected a string"],
    ],
    [
      "insecure as a string",
      () => config().replace("insecure: true", 'insecure: "yes"'),
      ["insecure", "expected true or false"],
    ],
    [
      "a tuning value out of range",
      () => config("tuning:\n  partConcurrency: 1000\n"),
      ["tuning.partConcurrency", "between 1 and 64"],
    ],
    [
      "a tuning value of the wrong type",
      () => config("tuning:\n  partSizeMiB: [5]\n"),
      ["tuning.partSizeMiB", "expected an integer"],
    ],
    [
      "a secret reference as a string",
      () => config("accessKeySecret: my-secret\n"),
      ["accessKeySecret", "expected a mapping"],
    ],
    ["an unknown top-level field", () => config("bogusField: 1\n"), ["bogusField", "unknown field"]],
    [
      "an unknown nested field",
      () => config("encryptionOptions:\n  enableEncryption: true\n  kmsKeyID: x\n"),
      ["encryptionOptions.kmsKeyID", "unknown field"],
    ],
    ["a duplicate key", () => `${config()}bucket: other\n`, ["(configuration)", "bucket"]],
    [
      "a 3 MiB configuration string",
      () => `${config()}# ${"x".repeat(3 * 1024 * 1024)}\n`,
      ["(configuration)", "larger than 64 KiB"],
    ],
    [
      "an endpoint with a path",
      () => config().replace(`endpoint: ${minio.endpoint}`, `endpoint: ${minio.endpoint}/some/path`),
      ["endpoint", "no path"],
    ],
    [
      "an endpoint with a scheme",
      () => config().replace(`endpoint: ${minio.endpoint}`, `endpoint: http://${minio.endpoint}`),
      ["endpoint", "without a scheme"],
    ],
    [
      "an endpoint with user:password@",
      () => config().replace(`endpoint: ${minio.endpoint}`, `endpoint: admin:${PASSWORD}@${minio.endpoint}`),
      ["endpoint", "user"],
    ],
    [
      "a scheme and user:password@",
      () => config().replace(`endpoint: ${minio.endpoint}`, `endpoint: https://admin:${PASSWORD}@${minio.endpoint}/p`),
      ["endpoint"],
    ],
    ["a YAML alias bomb", () => aliasBomb, ["(configuration)"]],
  ];

  it.each(cases)("%s: ListObjects answers with an error naming the field", async (_label, text, expected) => {
    const started = Date.now();
    const res = await plugin.client.listObjects(artifact(text(), "k"));
    expect(res.objects).toEqual([]);
    expect(res.error).toContain("invalid plugin configuration");
    for (const e of expected) expect(res.error).toContain(e);
    expect(res.error).not.toContain(PASSWORD);
    // Short, even for a multi-megabyte input, and quick.
    expect(res.error.length).toBeLessThan(600);
    expect(Date.now() - started).toBeLessThan(5000);
    await expectServing();
    tally({ suite: "hostile: configuration text", hostileTried: 1, hostileRefused: 1 });
  });

  it("Save with a broken configuration fails with the field named and uploads nothing", async () => {
    const src = join(work, "save-src.bin");
    writeFileSync(src, "data");
    const withPassword = config().replace(`endpoint: ${minio.endpoint}`, `endpoint: u:${PASSWORD}@${minio.endpoint}`);
    const r1 = await plugin.client.save(artifact(withPassword, "bad/cfg.bin"), src);
    expect(r1.success).toBe(false);
    expect(r1.error).toContain("endpoint");
    expect(r1.error).not.toContain(PASSWORD);
    const r2 = await plugin.client.save(artifact(config("tuning:\n  checksum: md5\n"), "bad/cfg.bin"), src);
    expect(r2).toMatchObject({ success: false, error: expect.stringContaining("tuning.checksum") });
    expect((await plugin.client.listObjects(artifact(config(), "bad"))).error).toContain("not found");
    await expectServing();
    tally({ suite: "hostile: configuration text", hostileTried: 2, hostileRefused: 2 });
  });

  it("never prints the password of a user:password@ endpoint", () => {
    expect(plugin.output()).toContain("invalid plugin configuration: endpoint");
    expect(plugin.output()).not.toContain(PASSWORD);
  });
});

describe("keys longer than S3 allows", () => {
  it("a key over 1,024 bytes (UTF-8) is refused at once with INVALID_ARGUMENT, by every RPC, before any request; 1,024 bytes pass", async () => {
    const over = `k/${"ä".repeat(512)}`; // 1,026 bytes, 514 characters
    const src = join(work, "long-key.bin");
    writeFileSync(src, "x");
    const before = proxy.requests;
    const expectRefused = async (p: Promise<unknown>) => {
      const e = (await p.then(
        () => expect.fail("accepted"),
        (x: unknown) => x,
      )) as { code?: number; details?: string };
      expect(e.code).toBe(3); // INVALID_ARGUMENT
      expect(e.details).toMatch(/plugin\.key is 1026 bytes; S3 object keys are at most 1024 bytes/);
    };
    const viaProxy = (extra = "") =>
      `endpoint: ${proxy.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\n${extra}`;
    await expectRefused(plugin.client.load(artifact(viaProxy(), over), join(work, "never")));
    await expectRefused(plugin.client.save(artifact(viaProxy(), over), src));
    await expectRefused(plugin.client.openStream(artifact(viaProxy(), over)));
    await expectRefused(plugin.client.listObjects(artifact(viaProxy(), over)));
    await expectRefused(plugin.client.isDirectory(artifact(viaProxy(), over)));
    await expectRefused(plugin.client.delete(artifact(viaProxy(), over)));
    expect(proxy.requests, "no request reached the store").toBe(before);
    // Segments of 200 bytes: MinIO keeps each on a file system (255 bytes a name).
    const exact = `${`${"a".repeat(200)}/`.repeat(5)}${"b".repeat(19)}`;
    expect(Buffer.byteLength(exact)).toBe(1024);
    expect(await plugin.client.save(artifact(config(), exact), src)).toEqual({ success: true, error: "" });
    tally({ suite: "hostile: over-long keys", hostileTried: 6, hostileRefused: 6 });
  });
});

describe("Save of a directory with symbolic links", () => {
  it("uploads the regular files only: no link is followed, nothing outside the tree is read", async () => {
    const base = join(work, "symlinks");
    const src = join(base, "tree");
    const outside = join(base, "outside");
    mkdirSync(join(src, "sub", "deeper"), { recursive: true });
    mkdirSync(join(outside, "dir"), { recursive: true });
    writeFileSync(join(src, "a.txt"), "a");
    writeFileSync(join(src, "sub", "b.txt"), "b");
    writeFileSync(join(src, "sub", "deeper", "c.txt"), "c");
    writeFileSync(join(outside, "secret.txt"), "outside secret");
    writeFileSync(join(outside, "dir", "inner-secret.txt"), "outside secret 2");
    symlinkSync("a.txt", join(src, "link-to-file")); // a file inside
    symlinkSync("sub", join(src, "link-to-dir")); // a directory inside
    symlinkSync(join(outside, "secret.txt"), join(src, "link-out-file")); // a file outside (absolute)
    symlinkSync("../../outside/dir", join(src, "sub", "link-out-dir")); // a directory outside (relative)
    symlinkSync("loop-b", join(src, "loop-a")); // a loop between two links
    symlinkSync("loop-a", join(src, "loop-b"));
    symlinkSync("..", join(src, "sub", "deeper", "up")); // a cycle back up the tree
    symlinkSync("missing", join(src, "dangling"));

    const a = artifact(config(), "sym/out");
    const res = await plugin.client.save(a, src);
    expect(res).toEqual({ success: true, error: "" });
    const listed = await plugin.client.listObjects(a);
    expect(listed.error).toBe("");
    expect(listed.objects.sort()).toEqual(["sym/out/a.txt", "sym/out/sub/b.txt", "sym/out/sub/deeper/c.txt"]);
    // Nothing at all landed elsewhere in the bucket under sym/.
    expect((await plugin.client.listObjects(artifact(config(), "sym"))).objects.sort()).toEqual(listed.objects.sort());
    // The plugin's log line counts the skipped links.
    expect(plugin.output()).toMatch(/"method":"Save"[^\n]*"key":"sym\/out"[^\n]*"skippedSymlinks":8/);
    await expectServing();
    tally({ suite: "hostile: symbolic links in a saved directory (not followed)", hostileTried: 8, hostileRefused: 8 });
  });

  it("a symbolic link given as the Save path itself is saved as what it points to (Argo's own path, not a walked entry)", async () => {
    // Argo hands the plugin the path it wants saved; only entries found while walking a directory are skipped.
    const base = join(work, "top-link");
    mkdirSync(join(base, "real"), { recursive: true });
    writeFileSync(join(base, "real", "f.txt"), "f");
    symlinkSync("real", join(base, "alias"));
    const a = artifact(config(), "toplink");
    expect(await plugin.client.save(a, join(base, "alias"))).toEqual({ success: true, error: "" });
    expect((await plugin.client.listObjects(a)).objects).toEqual(["toplink/f.txt"]);
  });
});

describe("Load path safety", () => {
  it("Load of a prefix writes only inside its target: the sandbox holds the target directory and nothing else", async () => {
    const keys: Record<string, Buffer> = {
      "e2e/a.txt": randomBytes(100),
      "e2e/sub/b.txt": randomBytes(2000),
      "e2e/sub/deeper/c.bin": randomBytes(70_000),
      "e2e/.hidden": Buffer.from("h"),
      "e2e/..dots": Buffer.from("d"),
      "e2e/sp ace/ü.txt": Buffer.from("u"),
    };
    for (const [Key, Body] of Object.entries(keys)) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
    // A sibling prefix sharing the first letters must not be pulled in.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "e2e-sibling/x.txt", Body: "sibling" }));

    const outer = mkdtempSync(join(work, "outer-"));
    const sandbox = join(outer, "sandbox");
    const target = join(sandbox, "target");
    mkdirSync(target, { recursive: true });
    writeFileSync(join(outer, "neighbour.txt"), "untouched");
    const outerBefore = tree(outer);
    const sandboxMtime = statSync(sandbox).mtimeMs;

    expect(await plugin.client.load(artifact(config(), "e2e"), target)).toEqual({ success: true, error: "" });

    expect(readdirSync(sandbox)).toEqual(["target"]);
    expect(statSync(sandbox).mtimeMs).toBe(sandboxMtime);
    expect(tree(target)).toEqual(["..dots", ".hidden", "a.txt", "sp ace/ü.txt", "sub/b.txt", "sub/deeper/c.bin"]);
    for (const [key, body] of Object.entries(keys))
      expect(readFileSync(join(target, key.slice("e2e/".length))).equals(body)).toBe(true);
    // Outside the sandbox only the loaded files are new.
    const added = tree(outer).filter((p) => !outerBefore.includes(p));
    expect(added.every((p) => p.startsWith("sandbox/target/"))).toBe(true);
    expect(readFileSync(join(outer, "neighbour.txt"), "utf8")).toBe("untouched");
    expect(readdirSync(outer).sort()).toEqual(["neighbour.txt", "sandbox"]);
  });
});

describe("hostile listings: keys that would escape the Load target", () => {
  // Real objects under evil/; the proxy renames one of them in ListObjectsV2's answer.
  const proxyConfig = () =>
    config().replace(`endpoint: ${minio.endpoint}`, `endpoint: ${proxy.endpoint}`) +
    "tuning: {maxAttempts: 2, partSizeMiB: 5, multipartThresholdMiB: 5}\n";
  const isListing = (r: { method?: string; url?: string }) =>
    r.method === "GET" && (r.url ?? "").includes("list-type=2");
  const xml = (k: string) => k.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  beforeAll(async () => {
    await s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "evil/aaa-first.txt", Body: "a good file, listed first" }),
    );
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "evil/placeholder.txt", Body: "p" }));
  });
  afterAll(() => proxy.rewrite());

  // [label, the key the listing claims, the file it would create if followed (relative to the sandbox's parent), or undefined]
  const cases: Array<[string, (outer: string) => string, string | undefined]> = [
    ["../ climbing out", () => "evil/../../escape-1.txt", "escape-1.txt"],
    ["prefix/sub/../../../x", () => "evil/sub/../../../escape-2.txt", "escape-2.txt"],
    ["an absolute path after the prefix", (outer) => `evil/${outer}/escape-3.txt`, "escape-3.txt"],
    ["backslash traversal", () => "evil/..\\..\\escape-4.txt", undefined],
    ["a name longer than the file system allows", () => `evil/${"n".repeat(300)}.txt`, undefined],
    ["a NUL byte", () => "evil/nul\u0000escape-6.txt", undefined],
    ["a Windows drive path", () => "evil/C:\\escape-7.txt", undefined],
  ];

  it.each(cases)(
    "%s: Load is refused naming the key, and the file system around the target is unchanged",
    async (_label, hostileKey, wouldCreate) => {
      const outer = mkdtempSync(join(work, "listing-"));
      const key = hostileKey(outer);
      proxy.rewrite((body, req) => {
        const urlEncoded = new URL(req.url ?? "/", "http://proxy").searchParams.get("encoding-type") === "url";
        const wire = urlEncoded ? encodeURIComponent(key).replace(/%2F/g, "/") : xml(key).replace(/\u0000/g, "&#0;");
        return body.replaceAll("<Key>evil/placeholder.txt</Key>", `<Key>${wire}</Key>`);
      }, isListing);
      mkdirSync(join(outer, "sandbox"));
      writeFileSync(join(outer, "neighbour.txt"), "untouched");
      const before = tree(outer);
      const target = join(outer, "sandbox", "target");
      const res = await plugin.client.load(artifact(proxyConfig(), "evil"), target);
      proxy.rewrite();
      tally({ suite: "hostile: listing keys escaping the Load target", hostileTried: 1 });
      expect(res.success, `Load with ${JSON.stringify(key)} listed`).toBe(false);
      expect(res.error).toContain("refusing to load object");
      expect(res.error).toContain(key.slice(0, 40));
      // Nothing new anywhere around it: the half-loaded target (it did not exist) is removed too.
      expect(tree(outer)).toEqual(before);
      expect(readdirSync(join(outer, "sandbox"))).toEqual([]);
      if (wouldCreate) expect(existsSync(join(outer, wouldCreate))).toBe(false);
      expect(readFileSync(join(outer, "neighbour.txt"), "utf8")).toBe("untouched");
      await expectServing();
      tally({ suite: "hostile: listing keys escaping the Load target", hostileRefused: 1 });
    },
  );
});

describe("an endless listing", () => {
  it("ListObjects stops at what one answer can carry, with an error naming the prefix; the plugin lives on", async () => {
    // A store whose every ListObjectsV2 page holds 1,000 long keys and says "there is more", for ever.
    let page = 0;
    const endless = createServer((req, res) => {
      req.resume();
      page++;
      const keys = Array.from(
        { length: 1000 },
        (_, i) =>
          `<Contents><Key>endless/${page}-${i}-${"k".repeat(180)}</Key><Size>1</Size><ETag>"x"</ETag></Contents>`,
      ).join("");
      res.writeHead(200, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${BUCKET}</Name><Prefix>endless/</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>${keys}<NextContinuationToken>t${page}</NextContinuationToken></ListBucketResult>`,
      );
    });
    await new Promise<void>((r) => endless.listen(0, "127.0.0.1", r));
    const port = (endless.address() as { port: number }).port;
    try {
      tally({ suite: "hostile: endless listing", hostileTried: 1 });
      const res = await plugin.client.listObjects(
        artifact(config().replace(`endpoint: ${minio.endpoint}`, `endpoint: 127.0.0.1:${port}`), "endless"),
      );
      expect(res.objects).toEqual([]);
      expect(res.error).toContain(`s3://${BUCKET}/endless/`);
      expect(res.error).toContain("more than one answer can carry");
      expect(page).toBeLessThan(100);
    } finally {
      endless.closeAllConnections();
      endless.close();
    }
    await expectServing();
    tally({ suite: "hostile: endless listing", hostileRefused: 1 });
  });
});

describe("an oversized answer", () => {
  it("IsDirectory and ListObjects against a store answering with 300 MiB are cut at the cap, without taking the memory", async () => {
    const big = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/xml" });
      const chunk = Buffer.alloc(1024 * 1024, "<Contents><Key>x</Key></Contents>");
      let sent = 0;
      const pump = () => {
        while (sent < 300) {
          sent++;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      res.write('<?xml version="1.0"?><ListBucketResult>');
      pump();
    });
    await new Promise<void>((r) => big.listen(0, "127.0.0.1", r));
    const port = (big.address() as { port: number }).port;
    const hwm = () =>
      Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${plugin.proc.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
    const before = hwm();
    try {
      const cfg =
        config().replace(`endpoint: ${minio.endpoint}`, `endpoint: 127.0.0.1:${port}`) + "tuning: {maxAttempts: 1}\n";
      tally({ suite: "hostile: oversized answers", hostileTried: 2 });
      const isDir = await plugin.client.isDirectory(artifact(cfg, "huge"));
      expect(isDir.error).toContain("larger than 24 KiB for 1 key"); // IsDirectory asks for one key
      const list = await plugin.client.listObjects(artifact(cfg, "huge"));
      expect(list.error).toMatch(/larger than 7\.8 MiB for 1000 keys/); // room for 1,000 keys of 8 KiB each, escaped
      // Peak memory grew by far less than the answer (300 MiB; whole, it took 1.3 GiB and more).
      expect(hwm() - before).toBeLessThan(100);
      tally({ suite: "hostile: oversized answers", hostileRefused: 2 });
    } finally {
      big.closeAllConnections();
      big.close();
    }
    await expectServing();
  });
});

describe("many distinct configurations", () => {
  it("200 configurations (one S3 client each, 32 kept) leave no pile of open sockets behind", async () => {
    const fds = () => readdirSync(`/proc/${plugin.proc.pid}/fd`).length;
    const before = fds();
    tally({ suite: "hostile: many distinct configurations", hostileTried: 1 });
    for (let i = 0; i < 200; i++) {
      const res = await plugin.client.isDirectory(
        artifact(
          config(`tuning: {maxAttempts: ${1 + (i % 20)}, partConcurrency: ${1 + Math.floor(i / 20)}}\n`),
          "nothing-here",
        ),
      );
      expect(res.error).toBe("");
    }
    // Evicted clients' idle connections are closed at once; what stays is the 32 kept clients' pools.
    expect(fds() - before).toBeLessThan(60);
    tally({ suite: "hostile: many distinct configurations", hostileRefused: 1 });
  });
});

describe("file names at the file system's limit", () => {
  it("loads an object whose name is 250 bytes (its temporary sibling's name must still fit)", async () => {
    const name = "n".repeat(250);
    const body = randomBytes(300 * 1024);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `long/${name}`, Body: body }));
    const dir = mkdtempSync(join(work, "long-"));
    expect(await plugin.client.load(artifact(config(), `long/${name}`), join(dir, name))).toEqual({
      success: true,
      error: "",
    });
    expect(readFileSync(join(dir, name)).equals(body)).toBe(true);
    mkdirSync(join(dir, "existing"));
    expect(await plugin.client.load(artifact(config(), "long"), join(dir, "existing"))).toEqual({
      success: true,
      error: "",
    });
    expect(readFileSync(join(dir, "existing", name)).equals(body)).toBe(true);
  });
});

describe("Load into an existing target whose directory is swapped for a link after it was checked", () => {
  it("refuses to write through it: the file is not created outside, the Load fails naming the target", async () => {
    // In-process, to place the swap exactly between the directory check and the file's creation.
    const { S3TargetFactory } = await import("../../src/s3/targets.js");
    const { parseConfig } = await import("../../src/config/parse.js");
    const { TransferEngine } = await import("../../src/transfer/engine.js");
    Object.assign(process.env, rootKeysEnv(minio));
    const t = await new S3TargetFactory({ get: () => Promise.resolve(undefined) }, { env: process.env }).get(
      parseConfig(config()),
      config(),
    );
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "swapped/sub/f.txt", Body: "data" }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "swapped/sub/big.bin", Body: randomBytes(400 * 1024) }));
    const outer = mkdtempSync(join(work, "swapped-"));
    const target = join(outer, "target");
    mkdirSync(join(target, "sub"), { recursive: true });
    mkdirSync(join(outer, "outside"));
    // The check passed (sub is a directory); now a neighbour swaps it for a link.
    rmSync(join(target, "sub"), { recursive: true });
    symlinkSync(join(outer, "outside"), join(target, "sub"));
    const realRoot = realpathSync(target);
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileTried: 2 });
    for (const [key, size] of [
      ["swapped/sub/f.txt", 4],
      ["swapped/sub/big.bin", 400 * 1024],
    ] as const) {
      const dest = join(target, "sub", key.split("/").at(-1)!);
      await expect(
        new TransferEngine()
          .job(t)
          .download(key, dest, new AbortController().signal, { known: { size, etag: undefined }, within: realRoot }),
      ).rejects.toThrow(/outside the target directory/);
    }
    expect(readdirSync(join(outer, "outside"))).toEqual([]);
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileRefused: 2 });
  });
});

describe("Load into a target that already exists", () => {
  const proxyConfig = () =>
    config().replace(`endpoint: ${minio.endpoint}`, `endpoint: ${proxy.endpoint}`) +
    "tuning: {maxAttempts: 2, partSizeMiB: 5, multipartThresholdMiB: 5}\n";

  it("refuses to write through a symbolic link to a directory outside the target", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "linked/sub/x.txt", Body: "x" }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "linked/sub/deeper/y.txt", Body: "y" }));
    const outer = mkdtempSync(join(work, "linked-"));
    mkdirSync(join(outer, "outside"));
    writeFileSync(join(outer, "outside", "victim.txt"), "untouched");
    mkdirSync(join(outer, "target"));
    symlinkSync("../outside", join(outer, "target", "sub"));
    const before = tree(outer);
    const res = await plugin.client.load(artifact(config(), "linked"), join(outer, "target"));
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileTried: 1 });
    expect(res.success).toBe(false);
    expect(res.error).toContain("is a symbolic link");
    expect(res.error).toContain(join(outer, "target", "sub"));
    expect(tree(outer)).toEqual(before);
    expect(readdirSync(join(outer, "outside"))).toEqual(["victim.txt"]);
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileRefused: 1 });
  });

  it("replaces a link standing where a file goes instead of writing through it", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "filelink/top.txt", Body: "new content" }));
    const outer = mkdtempSync(join(work, "filelink-"));
    mkdirSync(join(outer, "target"));
    writeFileSync(join(outer, "victim.txt"), "untouched");
    symlinkSync("../victim.txt", join(outer, "target", "top.txt"));
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileTried: 1 });
    expect(await plugin.client.load(artifact(config(), "filelink"), join(outer, "target"))).toEqual({
      success: true,
      error: "",
    });
    expect(lstatSync(join(outer, "target", "top.txt")).isFile()).toBe(true);
    expect(readFileSync(join(outer, "target", "top.txt"), "utf8")).toBe("new content");
    expect(readFileSync(join(outer, "victim.txt"), "utf8")).toBe("untouched");
    tally({ suite: "hostile: symbolic links inside an existing Load target", hostileRefused: 1 });
  });

  it("a Load that fails midway leaves the files that were there untouched (directory and single file)", async () => {
    const big = randomBytes(12 * 1024 * 1024);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "keep/big.bin", Body: big }));
    const outer = mkdtempSync(join(work, "keep-"));
    mkdirSync(join(outer, "target"));
    const old = randomBytes(3 * 1024 * 1024);
    writeFileSync(join(outer, "target", "big.bin"), old);
    writeFileSync(join(outer, "single.bin"), old);
    // Every ranged GET of it comes back cut short: all attempts fail.
    proxy.inject(
      1000,
      "truncate",
      (r) => r.method === "GET" && (r.url ?? "").includes("keep/big.bin") && r.headers["range"] !== undefined,
    );
    try {
      const dir = await plugin.client.load(artifact(proxyConfig(), "keep"), join(outer, "target"));
      const file = await plugin.client.load(artifact(proxyConfig(), "keep/big.bin"), join(outer, "single.bin"));
      for (const r of [dir, file]) {
        expect(r.success).toBe(false);
        expect(r.error).toContain("keep/big.bin");
      }
    } finally {
      proxy.inject(0, "truncate");
    }
    let lost = 0;
    for (const p of [join(outer, "target", "big.bin"), join(outer, "single.bin")])
      if (!readFileSync(p).equals(old)) lost += old.length;
    tally({
      suite: "faults: truncated downloads over existing files",
      faultsInjected: 2,
      bytesChecked: 2 * old.length,
      bytesLost: lost,
    });
    expect(lost, "bytes of the files that were there before, damaged by the failed Load").toBe(0);
    expect(tree(outer)).toEqual(["single.bin", "target/big.bin"]); // no temporary file left either
    tally({ suite: "faults: truncated downloads over existing files", faultsSurvived: 2 });
  });
});

describe("socket file mode", () => {
  it("is 0660 by default", () => {
    expect(statSync(plugin.socket).mode & 0o777).toBe(0o660);
  });

  it("honours ARGO_S3_PLUGIN_SOCKET_MODE", async () => {
    const other = await startPlugin({ ARGO_S3_PLUGIN_SOCKET_MODE: "600" });
    try {
      expect(statSync(other.socket).isSocket()).toBe(true);
      expect(statSync(other.socket).mode & 0o777).toBe(0o600);
      expect(await other.client.getCapabilities()).toEqual({ supportsSaveStream: true });
    } finally {
      expect(await other.stop()).toBe(0);
    }
  });
});
