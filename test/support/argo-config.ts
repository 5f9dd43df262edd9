// A workflow-controller ConfigMap through Argo's own controller-config parser
// (test/argo-tools/configcheck runs config.Controller.Get on it), as the
// controller and argo-server would read it.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { argoTools } from "../../scripts/lib/tools.mjs";

const run = promisify(execFile);

/** The parts of Argo's controller Config the tests look at. */
export interface ArgoConfig {
  artifactDrivers?: { name: string; image: string; connectionTimeoutSeconds?: number }[];
  images?: Record<string, { entrypoint?: string[]; cmd?: string[] }>;
  workflowDefaults?: { spec?: { podMetadata?: { annotations?: Record<string, string> } } };
  artifactRepository?: { plugin?: { name?: string; keyFormat?: string; configuration?: string } };
  /** The rest of Argo's Config, compared whole where a test needs it. */
  [key: string]: unknown;
}

/** Parses `cm` with Argo's code; rejects with Argo's error when Argo refuses it. */
export async function argoParse(cm: Record<string, unknown>): Promise<ArgoConfig> {
  const dir = mkdtempSync(join(tmpdir(), "argo-cm-"));
  try {
    writeFileSync(join(dir, "cm.yaml"), stringify(cm));
    const r = await run((await argoTools()).configcheck, [join(dir, "cm.yaml")], { timeout: 60_000 }).catch(
      (e: { stderr?: string }) => {
        throw new Error(`Argo's config parser refused it: ${e.stderr ?? String(e)}`);
      },
    );
    return JSON.parse(r.stdout) as ArgoConfig;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
