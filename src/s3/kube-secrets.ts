// Reads Kubernetes secrets the way an in-cluster client does: the API server
// from KUBERNETES_SERVICE_HOST/PORT, the bearer token, CA bundle and namespace
// from the service-account directory. The token is re-read on every fetch
// because projected tokens rotate. Values are cached for a short TTL so a
// directory of 10,000 files does not cost 10,000 API calls.
import { readFile } from "node:fs/promises";
import { request } from "node:https";
import type { SecretRef } from "../config/types.js";
import { DEFAULT_SERVICEACCOUNT_DIR, secretNameProblem } from "../util/kube-names.js";
import { PluginError, describeError } from "../errors.js";

export interface SecretSource {
  /** The value of one key of one secret, as bytes. */
  get(ref: SecretRef): Promise<Buffer | undefined>;
}

interface KubeEnv {
  host: string;
  port: string;
  saDir: string;
}

function kubeEnv(env: NodeJS.ProcessEnv): KubeEnv {
  return {
    host: env["KUBERNETES_SERVICE_HOST"] ?? "",
    port: env["KUBERNETES_SERVICE_PORT"] ?? "443",
    saDir: env["ARGO_S3_PLUGIN_SERVICEACCOUNT_DIR"] || DEFAULT_SERVICEACCOUNT_DIR,
  };
}

interface CacheEntry {
  expires: number;
  value: Promise<Record<string, string>>;
}

export class KubeSecretSource implements SecretSource {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly ttlMs = 60_000,
  ) {}

  async get(ref: SecretRef): Promise<Buffer | undefined> {
    const data = await this.secretData(ref.name);
    const b64 = data[ref.key];
    if (b64 === undefined) {
      if (ref.optional) return undefined;
      throw new PluginError("credentials", `Kubernetes secret "${ref.name}" has no key "${ref.key}"`);
    }
    return Buffer.from(b64, "base64");
  }

  private secretData(name: string): Promise<Record<string, string>> {
    const now = Date.now();
    const hit = this.cache.get(name);
    if (hit && hit.expires > now) return hit.value;
    const value = this.fetchSecret(name);
    this.cache.set(name, { expires: now + this.ttlMs, value });
    // A failed fetch must not be cached for the whole TTL.
    value.catch(() => {
      if (this.cache.get(name)?.value === value) this.cache.delete(name);
    });
    return value;
  }

  private async fetchSecret(name: string): Promise<Record<string, string>> {
    // The configuration parser refuses such names already; no path of the API is built from one anyway.
    const bad = secretNameProblem(name);
    if (bad) throw new PluginError("invalid-config", `Kubernetes secret ${JSON.stringify(name)} ${bad}`);
    const { host, port, saDir } = kubeEnv(this.env);
    if (!host) {
      throw new PluginError(
        "credentials",
        `cannot read Kubernetes secret "${name}": KUBERNETES_SERVICE_HOST is not set (not running in a cluster?)`,
      );
    }
    let token: string, ca: Buffer, namespace: string;
    try {
      [token, ca, namespace] = await Promise.all([
        readFile(`${saDir}/token`, "utf8").then((t) => t.trim()),
        readFile(`${saDir}/ca.crt`),
        readFile(`${saDir}/namespace`, "utf8").then((n) => n.trim()),
      ]);
    } catch (e) {
      throw new PluginError(
        "credentials",
        `cannot read Kubernetes secret "${name}": service-account files in ${saDir} unreadable: ${describeError(e)}`,
      );
    }
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
    const where = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host,
          port,
          path,
          method: "GET",
          ca,
          headers: { authorization: `Bearer ${token}`, accept: "application/json" },
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > 4 * 1024 * 1024) req.destroy(new Error("response larger than 4 MiB"));
            else chunks.push(c);
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out after 10 s")));
      req.on("error", reject);
      req.end();
    }).catch((e: unknown) => {
      throw new PluginError(
        "credentials",
        `cannot read Kubernetes secret "${name}" from ${where}: ${describeError(e)}`,
      );
    });
    if (status !== 200) {
      const why =
        status === 404
          ? "not found"
          : status === 403
            ? "forbidden (the pod's service account needs get on secrets)"
            : status === 401
              ? "unauthorized (service-account token rejected)"
              : `HTTP ${status}`;
      throw new PluginError(
        "credentials",
        `cannot read Kubernetes secret "${name}" in namespace "${namespace}" from ${where}: ${why}`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new PluginError(
        "credentials",
        `cannot read Kubernetes secret "${name}" from ${where}: response is not JSON`,
      );
    }
    const data = (parsed as { data?: unknown }).data;
    if (data === undefined || data === null) return {};
    if (typeof data !== "object") {
      throw new PluginError("credentials", `cannot read Kubernetes secret "${name}" from ${where}: malformed data`);
    }
    return data as Record<string, string>;
  }
}

/**
 * The shared argo-server sidecar serves every user with argo-server's service
 * account, in argo-server's namespace, and the request carries no workflow
 * namespace: reading the secret a configuration names would be reading it on
 * the author's behalf (and sending it to the author's endpoint). There, only
 * secrets the operator lists may be read: "name" (any key) or "name/key".
 */
export class SharedModeSecrets implements SecretSource {
  constructor(
    private readonly inner: SecretSource,
    private readonly allowed: readonly { name: string; key?: string }[],
  ) {}

  get(ref: SecretRef): Promise<Buffer | undefined> {
    // Matched part by part: a name is never compared with a whole "name/key" entry.
    if (this.allowed.some((a) => a.name === ref.name && (a.key === undefined || a.key === ref.key)))
      return this.inner.get(ref);
    return Promise.reject(
      new PluginError(
        "credentials",
        `Kubernetes secret "${ref.name}" (key "${ref.key}") may not be read by this plugin: it is the shared argo-server sidecar (ARGO_S3_PLUGIN_SHARED), which reads no secret a workflow names unless the operator lists it in ARGO_S3_PLUGIN_ALLOWED_SECRETS. Give argo-server credentials of its own (IRSA or EKS Pod Identity with useSDKCreds), or ask the operator to allow this secret`,
      ),
    );
  }
}
