// The sidecar's liveness/readiness probe (dist/probe.js, used by deploy/) and
// the CLI's `health`: SERVING from a running plugin, a failure from a stopped
// (wedged) one within the probe's own bound, and from a missing socket.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { within } from "../support/bounded.js";
import { type PluginProcess, ROOT, startPlugin } from "../support/plugin.js";

const run = (args: string[]) =>
  within(
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(process.execPath, args, (e, out, err) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      );
    }),
    15_000,
    `node ${args.join(" ")}`,
  );

let plugin: PluginProcess;
beforeAll(async () => {
  plugin = await startPlugin();
});
afterAll(async () => {
  plugin.proc.kill("SIGCONT");
  await plugin?.stop();
});

describe("probe", () => {
  it("deploy/'s sidecar probes run dist/probe.js on the socket Argo gives the plugin", () => {
    const patch = parse(readFileSync(join(ROOT, "deploy", "argo-server-patch.yaml"), "utf8")) as {
      spec: {
        template: {
          spec: {
            containers: {
              name: string;
              args?: string[];
              livenessProbe?: { exec: { command: string[] } };
              readinessProbe?: { exec: { command: string[] } };
            }[];
          };
        };
      };
    };
    const sidecar = patch.spec.template.spec.containers.find((c) => c.livenessProbe)!;
    for (const p of [sidecar.livenessProbe!, sidecar.readinessProbe!]) {
      expect(p.exec.command.slice(0, 3)).toEqual(["node", "/app/dist/probe.js", sidecar.args![0]]);
    }
  });

  it("answers SERVING (exit 0) for a running plugin, by the probe and by the CLI", async () => {
    expect(await run([join(ROOT, "dist", "probe.js"), plugin.socket, "3"])).toMatchObject({
      code: 0,
      out: "SERVING\n",
    });
    expect(
      await run([join(ROOT, "dist", "bin", "cli.js"), "health", "--socket", plugin.socket, "--timeout", "3"]),
    ).toMatchObject({ code: 0, out: "SERVING\n" });
  });

  it("fails (exit 1) for a plugin that does not answer, within its own bound", async () => {
    plugin.proc.kill("SIGSTOP");
    try {
      const r = await run([join(ROOT, "dist", "probe.js"), plugin.socket, "1"]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/no answer from .* within 1 s/);
    } finally {
      plugin.proc.kill("SIGCONT");
    }
  });

  it("fails (exit 1) when there is no socket, naming it", async () => {
    const r = await run([join(ROOT, "dist", "probe.js"), "/nonexistent/socket", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("/nonexistent/socket");
  });
});
