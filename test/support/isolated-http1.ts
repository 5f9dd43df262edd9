// The lean HTTP client in a worker thread of its own, bundled from source
// with esbuild (so the unit tier needs no build): a client that spins its
// event loop forever or never settles is seen as "hung" after a bound and the
// worker is terminated, instead of freezing the test runner with it.
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { buildSync } from "esbuild";
import type { DriverOutcome, DriverRequest } from "./http1-driver.js";

export type { DriverOutcome, DriverRequest };
export type Outcome = { hung: true } | { hung: false; outcomes: DriverOutcome[] };

let code: string | undefined;
function bundle(): string {
  code ??= buildSync({
    entryPoints: [join(import.meta.dirname, "http1-driver.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    write: false,
    logLevel: "silent",
  }).outputFiles[0]!.text;
  return code;
}

export class IsolatedClient {
  private worker: Worker | undefined;
  private nextId = 0;
  /** Workers terminated because a case hung. */
  restarts = 0;

  private get live(): Worker {
    this.worker ??= new Worker(bundle(), { eval: true });
    return this.worker;
  }

  /** Runs `requests` in order on one pool against `port`; "hung" when they do not all settle within `boundMs`. */
  run(port: number, requests: DriverRequest[], boundMs: number): Promise<Outcome> {
    const worker = this.live;
    const id = this.nextId++;
    return new Promise<Outcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        worker.off("message", onMessage);
        this.worker = undefined;
        this.restarts++;
        void worker.terminate();
        resolve({ hung: true });
      }, boundMs);
      const onMessage = (m: { id: number; outcomes: DriverOutcome[] }) => {
        if (m.id !== id) return;
        clearTimeout(timer);
        worker.off("message", onMessage);
        resolve({ hung: false, outcomes: m.outcomes });
      };
      worker.on("message", onMessage);
      worker.removeAllListeners("error");
      worker.once("error", reject);
      worker.postMessage({ id, port, requests });
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = undefined;
  }
}
