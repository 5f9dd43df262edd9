// A stand-in for the Kubernetes API server, for the one thing the plugin asks
// of it: GET /api/v1/namespaces/<ns>/secrets/<name> over HTTPS with a bearer
// token, answering Secret JSON with base64 data as the real API does. Also
// writes the service-account directory (token, ca.crt, namespace).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selfSignedCert } from "../../scripts/lib/minio.mjs";

export interface KubeApi {
  env: Record<string, string>;
  saDir: string;
  token: string;
  requests: string[];
  setSecret(name: string, data: Record<string, string | Buffer>): void;
  forbid(name: string): void;
  stop(): Promise<void>;
}

export async function startKubeApi(namespace = "argo"): Promise<KubeApi> {
  const base = mkdtempSync(join(tmpdir(), "kube-"));
  const { cert, key } = await selfSignedCert(join(base, "tls"));
  const saDir = join(base, "serviceaccount");
  mkdirSync(saDir);
  const token = `sa-token-${Math.random().toString(36).slice(2)}`;
  writeFileSync(join(saDir, "token"), token);
  writeFileSync(join(saDir, "ca.crt"), readFileSync(cert));
  writeFileSync(join(saDir, "namespace"), namespace);
  const secrets = new Map<string, Record<string, string>>();
  const forbidden = new Set<string>();
  const requests: string[] = [];
  const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const json = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${token}`)
      return json(401, { kind: "Status", code: 401, reason: "Unauthorized" });
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/?]+)$/.exec(req.url ?? "");
    if (req.method !== "GET" || !m) return json(404, { kind: "Status", code: 404, reason: "NotFound" });
    const [, ns, name] = m as unknown as [string, string, string];
    if (ns !== namespace) return json(404, { kind: "Status", code: 404, reason: "NotFound" });
    if (forbidden.has(name)) return json(403, { kind: "Status", code: 403, reason: "Forbidden" });
    const data = secrets.get(name);
    if (!data) return json(404, { kind: "Status", code: 404, reason: "NotFound" });
    return json(200, { kind: "Secret", apiVersion: "v1", metadata: { name, namespace: ns }, data, type: "Opaque" });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    // A workflow's pod: the API, the service account, and the workflow's name and uid the controller gives executor containers.
    env: {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: String(port),
      ARGO_S3_PLUGIN_SERVICEACCOUNT_DIR: saDir,
      ARGO_WORKFLOW_NAME: "kube-api-test",
      ARGO_WORKFLOW_UID: "7f3c4a52-0000-4000-8000-000000000001",
    },
    saDir,
    token,
    requests,
    setSecret(name, data) {
      const enc: Record<string, string> = {};
      for (const [k, v] of Object.entries(data)) enc[k] = Buffer.from(v).toString("base64");
      secrets.set(name, enc);
    },
    forbid(name) {
      forbidden.add(name);
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(base, { recursive: true, force: true });
    },
  };
}
