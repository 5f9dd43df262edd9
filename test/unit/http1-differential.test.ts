// Differential test of the lean HTTP client (src/http/http1.ts) against Node's
// own parser (llhttp, through node:http): thousands of seeded answers, valid
// and mutated (support/answer-gen.ts), each sent by a scripted loopback server
// in random pieces to both. Properties: whatever llhttp refuses, we refuse;
// whatever both accept has the same status and body; no case hangs (our
// client runs in a worker and is bounded). FUZZ_CASES / FUZZ_SEED set the
// run (`npm run fuzz -- --cases N --seed S`).
import { request as httpRequest } from "node:http";
import { type AddressInfo, type Server, createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prng } from "../../scripts/lib/prng.mjs";
import { type GeneratedAnswer, generateAnswer } from "../support/answer-gen.js";
import { IsolatedClient } from "../support/isolated-http1.js";

const CASES = Number(process.env["FUZZ_CASES"] ?? 3000);
const SEED = Number(process.env["FUZZ_SEED"] ?? 20261203);

let server: Server;
let port: number;
const answers = new Map<number, GeneratedAnswer>();
const client = new IsolatedClient();

beforeAll(async () => {
  server = createServer((sock) => {
    let head = "";
    sock.on("error", () => undefined);
    const send = async (answer: GeneratedAnswer) => {
      for (const piece of answer.pieces) {
        if (sock.destroyed) return;
        sock.write(piece);
        await new Promise((r) => setImmediate(r));
      }
      sock.end();
    };
    sock.on("data", (d) => {
      if (head.includes("\r\n\r\n")) return;
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const id = Number(/^GET \/case\/(\d+) /.exec(head)?.[1]);
      const answer = answers.get(id);
      if (!answer) return void sock.destroy();
      void send(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await client.close();
  await new Promise((r) => server.close(r));
});

type Verdict =
  { ok: true; status: number; body: Buffer } | { ok: false; why: string } | { ok: "behind"; status: number };

/**
 * node:http's verdict: a complete answer (status and body), or the error it
 * stopped with first. An error about bytes *behind* a complete answer (llhttp
 * parses them as the next message) does not refuse the answer ("behind"): the
 * lean client does not keep such a connection, and either verdict is allowed
 * there (the body node:http had not handed out yet is not compared).
 */
function viaNode(id: number): Promise<Verdict> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (v: Verdict) => {
      if (!settled) ((settled = true), resolve(v));
    };
    const timer = setTimeout(() => done({ ok: false, why: "node:http did not finish within 5 s" }), 5000);
    const req = httpRequest({ host: "127.0.0.1", port, path: `/case/${id}`, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on(
        "end",
        () => (clearTimeout(timer), done({ ok: true, status: res.statusCode ?? 0, body: Buffer.concat(parts) })),
      );
      const failed = (why: string) =>
        res.complete ? done({ ok: "behind", status: res.statusCode ?? 0 }) : done({ ok: false, why });
      res.on("error", (e: Error & { code?: string }) => failed(e.code ?? e.message));
      res.on("aborted", () => failed("aborted"));
      response = { failed };
    });
    let response: { failed: (why: string) => void } | undefined;
    req.on("error", (e: Error & { code?: string }) =>
      response ? response.failed(e.code ?? e.message) : done({ ok: false, why: e.code ?? e.message }),
    );
    req.end();
  });
}

async function viaLean(
  id: number,
  collect: boolean,
): Promise<{ ok: true; status: number; body: Buffer } | { ok: false; why: string } | "hung"> {
  const o = await client.run(
    port,
    [{ capacity: collect ? "collect" : 1 << 20, timeoutMs: 3000, head: `GET /case/${id} HTTP/1.1\r\nhost: x\r\n\r\n` }],
    6000,
  );
  if (o.hung) return "hung";
  const r = o.outcomes[0]!;
  return r.ok
    ? { ok: true, status: r.status ?? 0, body: Buffer.from(r.body ?? "", "base64") }
    : { ok: false, why: r.message ?? r.code ?? "?" };
}

describe(`differential against llhttp (${CASES} cases, seed ${SEED})`, () => {
  it("refuses what llhttp refuses, agrees on what both accept, never hangs", async () => {
    const rand = prng(SEED);
    const counts = {
      bothAccept: 0,
      bothRefuse: 0,
      onlyWeRefuse: 0,
      llhttpRefusesWeAccept: 0,
      differ: 0,
      hung: 0,
      behindAnswer: 0,
    };
    const onlyWe = new Map<string, number>();
    const failures: string[] = [];
    const started = Date.now();
    for (let id = 0; id < CASES; id++) {
      const answer = generateAnswer(rand);
      answers.set(id, answer);
      const [node, lean] = await Promise.all([viaNode(id), viaLean(id, id % 4 === 3)]);
      answers.delete(id);
      const where = () =>
        `case ${id} (${answer.label}): ${JSON.stringify(Buffer.concat(answer.pieces).toString("latin1").slice(0, 160))}`;
      if (lean === "hung") {
        counts.hung++;
        failures.push(`hung: ${where()}`);
      } else if (node.ok === "behind") {
        counts.behindAnswer++;
        if (lean.ok && lean.status !== node.status)
          failures.push(`different status (${node.status} vs ${lean.status}): ${where()}`);
      } else if (!node.ok && lean.ok) {
        counts.llhttpRefusesWeAccept++;
        failures.push(`llhttp refused (${node.why}), we accepted: ${where()}`);
      } else if (!node.ok) counts.bothRefuse++;
      else if (!lean.ok) {
        counts.onlyWeRefuse++;
        const what = lean.why.replace(/".*"|\d+/g, "…").slice(0, 70);
        onlyWe.set(what, (onlyWe.get(what) ?? 0) + 1);
      } else if (node.status !== lean.status || !node.body.equals(lean.body)) {
        counts.differ++;
        failures.push(
          `both accepted, different answers (${node.status}/${node.body.length}B vs ${lean.status}/${lean.body.length}B): ${where()}`,
        );
      } else counts.bothAccept++;
    }
    console.log(`refused here, accepted by llhttp: ${JSON.stringify(Object.fromEntries(onlyWe))}`);
    console.log(
      `http1 differential: ${CASES} cases (seed ${SEED}) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(counts)}; worker restarts ${client.restarts}`,
    );
    expect(failures.slice(0, 20)).toEqual([]);
    // The generator must exercise both sides of the line, or the test proves nothing.
    expect(counts.bothAccept).toBeGreaterThan(CASES / 10);
    expect(counts.bothRefuse).toBeGreaterThan(CASES / 10);
  }, 600_000);
});
