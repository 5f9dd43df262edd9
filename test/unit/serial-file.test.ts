// download-to-file's SerialFile: a file's ranged writes one at a time, on the
// event loop while they are quick, through the thread pool once one was slow.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { SerialFile } from "../../src/transfer/download-to-file.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function writeInPieces(slowMs: number): Promise<{ file: SerialFile; bytes: Buffer; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), "serial-"));
  dirs.push(dir);
  const path = join(dir, "f");
  const fh = await open(path, "wx");
  const file = new SerialFile(fh, slowMs, { slowAt: -Infinity });
  const bytes = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) >>> 3;
  // Pieces out of order, as parallel ranges hand them over; none awaited before the next is asked.
  const pieces = [3, 0, 2, 1].map((n) => ({
    at: n * 256 * 1024,
    data: bytes.subarray(n * 256 * 1024, (n + 1) * 256 * 1024),
  }));
  await Promise.all(pieces.map((p) => file.write(p.data, p.at)));
  await fh.close();
  return { file, bytes, path };
}

it("writes each piece at its offset, on the event loop while writes are quick", async () => {
  const { file, bytes, path } = await writeInPieces(10_000);
  expect(file.pooled).toBe(false);
  expect(readFileSync(path).equals(bytes)).toBe(true);
});

it("after a slow write, the file's later writes go through the thread pool, still at their offsets", async () => {
  const { file, bytes, path } = await writeInPieces(-1);
  expect(file.pooled).toBe(true);
  expect(readFileSync(path).equals(bytes)).toBe(true);
});

it("a slow write sends the writes of files opened after it to the thread pool too, for a while", async () => {
  const disk = { slowAt: -Infinity };
  const dir = mkdtempSync(join(tmpdir(), "serial-"));
  dirs.push(dir);
  const a = await open(join(dir, "a"), "wx");
  const first = new SerialFile(a, -1, disk);
  expect(first.pooled).toBe(false);
  await first.write(Buffer.from("x"), 0);
  expect(first.pooled, "its own later writes").toBe(true);
  const b = await open(join(dir, "b"), "wx");
  expect(new SerialFile(b, 10_000, disk).pooled, "a file opened next").toBe(true);
  expect(new SerialFile(b, 10_000, { slowAt: -Infinity }).pooled, "another disk's record").toBe(false);
  await a.close();
  await b.close();
});

it("a failed write rejects, in either mode, naming the system's error", async () => {
  for (const slowMs of [10_000, -1]) {
    const dir = mkdtempSync(join(tmpdir(), "serial-"));
    dirs.push(dir);
    await (await open(join(dir, "f"), "wx")).close();
    const fh = await open(join(dir, "f"), "r"); // opened for reading: every write fails with EBADF
    const file = new SerialFile(fh, slowMs, { slowAt: slowMs < 0 ? performance.now() : -Infinity });
    await expect(file.write(Buffer.from("y"), 1)).rejects.toThrow(/EBADF/);
    await fh.close();
  }
});

it("writes through the pool are timed: quick ones in a row bring the file, and files opened later, back to the event loop", async () => {
  const disk = { slowAt: -Infinity };
  const dir = mkdtempSync(join(tmpdir(), "serial-"));
  dirs.push(dir);
  const a = await open(join(dir, "a"), "wx");
  await new SerialFile(a, -1, disk).write(Buffer.from("x"), 0); // one slow write
  const b = await open(join(dir, "b"), "wx");
  const file = new SerialFile(b, 10_000, disk);
  expect(file.pooled, "opened within the slow write's minute").toBe(true);
  const piece = Buffer.alloc(4096, 7);
  for (let i = 0; i < 15; i++) await file.write(piece, i * piece.length);
  expect(file.pooled, "15 quick writes are not yet enough").toBe(true);
  await file.write(piece, 15 * piece.length);
  expect(file.pooled, "the 16th").toBe(false);
  const c = await open(join(dir, "c"), "wx");
  expect(new SerialFile(c, 10_000, disk).pooled, "a file opened next").toBe(false);
  expect(readFileSync(join(dir, "b")).equals(Buffer.alloc(16 * 4096, 7))).toBe(true);
  for (const fh of [a, b, c]) await fh.close();
});

it("a slow write through the pool keeps the file there and renews the memory", async () => {
  const disk = { slowAt: -Infinity };
  const dir = mkdtempSync(join(tmpdir(), "serial-"));
  dirs.push(dir);
  const a = await open(join(dir, "a"), "wx");
  const file = new SerialFile(a, -1, disk);
  await file.write(Buffer.from("x"), 0);
  const first = disk.slowAt;
  await new Promise((r) => setTimeout(r, 5));
  for (let i = 1; i < 20; i++) await file.write(Buffer.from("y"), i);
  expect(file.pooled).toBe(true);
  expect(disk.slowAt).toBeGreaterThan(first);
  await a.close();
});
