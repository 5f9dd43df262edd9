// Credential selection in Argo's precedence, the secrets-backed provider, the
// Kubernetes secret reader against an HTTPS stand-in of the API server, and the
// small S3 client helpers (addressing style, endpoint URL, region).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/parse.js";
import type { SecretRef } from "../../src/config/types.js";
import { PluginError } from "../../src/errors.js";
import { effectiveRegion, endpointUrl, isAwsEndpoint, usePathStyle } from "../../src/s3/targets.js";
import { chooseCredentials } from "../../src/s3/credentials.js";
import { KubeSecretSource, type SecretSource } from "../../src/s3/kube-secrets.js";
import { type KubeApi, startKubeApi } from "../support/kube-api.js";

/** In-memory SecretSource keyed by "name/key"; records every lookup. */
class MapSecrets implements SecretSource {
  readonly lookups: string[] = [];
  constructor(private readonly values: Record<string, string>) {}
  async get(ref: SecretRef): Promise<Buffer | undefined> {
    const id = `${ref.name}/${ref.key}`;
    this.lookups.push(id);
    const v = this.values[id];
    return v === undefined ? undefined : Buffer.from(v);
  }
}

const KEYS = "accessKeySecret: {name: creds, key: ak}\nsecretKeySecret: {name: creds, key: sk}\n";

describe("chooseCredentials precedence", () => {
  const none = new MapSecrets({});

  it("access+secret key secrets win, even with roleARN and useSDKCreds set", () => {
    const cfg = parseConfig(`bucket: b\n${KEYS}roleARN: arn:aws:iam::1:role/r\nuseSDKCreds: true\n`);
    expect(chooseCredentials(cfg, none, "us-east-1", process.env).source).toBe("kubernetes-secrets");
  });

  it("roleARN alone → assume-role (also with useSDKCreds)", () => {
    expect(
      chooseCredentials(parseConfig("bucket: b\nroleARN: arn:aws:iam::1:role/r\n"), none, "us-east-1", process.env)
        .source,
    ).toBe("assume-role");
    const both = parseConfig("bucket: b\nroleARN: arn:aws:iam::1:role/r\nuseSDKCreds: true\n");
    expect(chooseCredentials(both, none, "us-east-1", process.env).source).toBe("assume-role");
  });

  it("useSDKCreds or nothing → the SDK default chain", () => {
    expect(
      chooseCredentials(parseConfig("bucket: b\nuseSDKCreds: true\n"), none, "us-east-1", process.env).source,
    ).toBe("sdk-default-chain");
    expect(chooseCredentials(parseConfig("bucket: b\n"), none, "us-east-1", process.env).source).toBe(
      "sdk-default-chain",
    );
  });

  it("choosing does not read any secret yet", () => {
    const secrets = new MapSecrets({});
    chooseCredentials(parseConfig(`bucket: b\n${KEYS}`), secrets, "us-east-1", process.env);
    expect(secrets.lookups).toEqual([]);
  });
});

describe("credentials from Kubernetes secrets", () => {
  it("trims the keys, passes the session token and sets an expiration in the future", async () => {
    const secrets = new MapSecrets({
      "creds/ak": "  AKIAEXAMPLE\n",
      "creds/sk": "\tsecret/key+1 \n",
      "tok/st": " session-token\n",
    });
    const cfg = parseConfig(`bucket: b\n${KEYS}sessionTokenSecret: {name: tok, key: st}\n`);
    const before = Date.now();
    const creds = await chooseCredentials(cfg, secrets, "us-east-1", process.env).provider();
    expect(creds.accessKeyId).toBe("AKIAEXAMPLE");
    expect(creds.secretAccessKey).toBe("secret/key+1");
    expect(creds.sessionToken).toBe("session-token");
    expect(creds.expiration).toBeInstanceOf(Date);
    expect(creds.expiration!.getTime()).toBeGreaterThan(before);
    expect(secrets.lookups.sort()).toEqual(["creds/ak", "creds/sk", "tok/st"]);
  });

  it("has no session token when none is configured", async () => {
    const secrets = new MapSecrets({ "creds/ak": "AK", "creds/sk": "SK" });
    const creds = await chooseCredentials(
      parseConfig(`bucket: b\n${KEYS}`),
      secrets,
      "us-east-1",
      process.env,
    ).provider();
    expect(creds.sessionToken).toBeUndefined();
  });

  it("reads the secrets again on every call (rotation is picked up)", async () => {
    const values: Record<string, string> = { "creds/ak": "AK1", "creds/sk": "SK1" };
    const secrets = new MapSecrets(values);
    const { provider } = chooseCredentials(parseConfig(`bucket: b\n${KEYS}`), secrets, "us-east-1", process.env);
    expect((await provider()).accessKeyId).toBe("AK1");
    values["creds/ak"] = "AK2";
    expect((await provider()).accessKeyId).toBe("AK2");
  });

  it.each([
    ["an empty access key", { "ak-secret/ak": "  \n", "sk-secret/sk": "SK" }],
    ["an empty secret key", { "ak-secret/ak": "AK", "sk-secret/sk": "" }],
    ["a missing (optional) key", { "sk-secret/sk": "SK" }],
  ])("%s gives a credentials error naming the secrets", async (_what, values: Record<string, string>) => {
    const cfg = parseConfig(
      "bucket: b\naccessKeySecret: {name: ak-secret, key: ak}\nsecretKeySecret: {name: sk-secret, key: sk}\n",
    );
    const err = await chooseCredentials(cfg, new MapSecrets(values), "us-east-1", process.env)
      .provider()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).kind).toBe("credentials");
    expect((err as PluginError).message).toContain('"ak-secret"');
    expect((err as PluginError).message).toContain('"sk-secret"');
    expect((err as PluginError).message).toMatch(/empty/);
  });

  it("passes a secret source failure through", async () => {
    const failing: SecretSource = {
      get: async (ref) => {
        throw new PluginError("credentials", `cannot read Kubernetes secret "${ref.name}": not found`);
      },
    };
    const { provider } = chooseCredentials(parseConfig(`bucket: b\n${KEYS}`), failing, "us-east-1", process.env);
    await expect(provider()).rejects.toThrow(/"creds": not found/);
  });
});

describe("KubeSecretSource against an HTTPS API stand-in", () => {
  let api: KubeApi;
  const ref = (name: string, key: string, optional = false): SecretRef => ({ name, key, optional });

  beforeAll(async () => {
    api = await startKubeApi("argo");
    api.setSecret("s3-creds", { accessKey: "AKIA-FROM-K8S", secretKey: Buffer.from([0, 1, 2, 255]) });
    api.setSecret("denied", { x: "y" });
    api.forbid("denied");
  });
  afterAll(async () => {
    await api?.stop();
  });

  const requestsFor = (name: string) =>
    api.requests.filter((r) => r === `GET /api/v1/namespaces/argo/secrets/${name}`).length;

  it("reads a key, base64-decoded, from the pod's namespace", async () => {
    const src = new KubeSecretSource(api.env);
    expect((await src.get(ref("s3-creds", "accessKey")))?.toString("utf8")).toBe("AKIA-FROM-K8S");
    expect(await src.get(ref("s3-creds", "secretKey"))).toEqual(Buffer.from([0, 1, 2, 255]));
  });

  it("caches a secret within the TTL: one request for several keys and reads", async () => {
    api.setSecret("cached", { a: "1", b: "2" });
    const src = new KubeSecretSource(api.env, 60_000);
    const results = await Promise.all([src.get(ref("cached", "a")), src.get(ref("cached", "b"))]);
    await src.get(ref("cached", "a"));
    expect(results.map((r) => r?.toString())).toEqual(["1", "2"]);
    expect(requestsFor("cached")).toBe(1);
  });

  it("fetches again after the TTL and sees the new value", async () => {
    api.setSecret("rotating", { k: "old" });
    const src = new KubeSecretSource(api.env, 5);
    expect((await src.get(ref("rotating", "k")))?.toString()).toBe("old");
    api.setSecret("rotating", { k: "new" });
    // Wait well past the 5 ms TTL; this only orders events, nothing asserts on elapsed time.
    await new Promise((r) => setTimeout(r, 30));
    expect((await src.get(ref("rotating", "k")))?.toString()).toBe("new");
    expect(requestsFor("rotating")).toBe(2);
  });

  it("a missing secret → error with its name and 'not found'; the failure is not cached", async () => {
    const src = new KubeSecretSource(api.env);
    const err = await src.get(ref("late-secret", "k")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).kind).toBe("credentials");
    expect((err as Error).message).toContain('"late-secret"');
    expect((err as Error).message).toContain("not found");
    api.setSecret("late-secret", { k: "now-here" });
    expect((await src.get(ref("late-secret", "k")))?.toString()).toBe("now-here");
  });

  it("a missing key → error naming the key and the secret", async () => {
    const src = new KubeSecretSource(api.env);
    const err = await src.get(ref("s3-creds", "sessionToken")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain('"sessionToken"');
    expect((err as Error).message).toContain('"s3-creds"');
  });

  it("optional: true and a missing key → undefined", async () => {
    const src = new KubeSecretSource(api.env);
    expect(await src.get(ref("s3-creds", "sessionToken", true))).toBeUndefined();
  });

  it("a forbidden secret → error containing 'forbidden'", async () => {
    const src = new KubeSecretSource(api.env);
    const err = await src.get(ref("denied", "x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain("forbidden");
    expect((err as Error).message).toContain('"denied"');
  });

  it("no KUBERNETES_SERVICE_HOST → a clear error, no request", async () => {
    const before = api.requests.length;
    const src = new KubeSecretSource({ ARGO_S3_PLUGIN_SERVICEACCOUNT_DIR: api.saDir });
    const err = await src.get(ref("s3-creds", "accessKey")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain("KUBERNETES_SERVICE_HOST");
    expect((err as Error).message).toContain('"s3-creds"');
    expect(api.requests.length).toBe(before);
  });

  it("a rejected token → 'unauthorized'; the token file is re-read on each fetch", async () => {
    const tokenFile = join(api.saDir, "token");
    const src = new KubeSecretSource(api.env, 0);
    writeFileSync(tokenFile, "not-the-token");
    try {
      const err = await src.get(ref("s3-creds", "accessKey")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PluginError);
      expect((err as Error).message).toContain("unauthorized");
    } finally {
      writeFileSync(tokenFile, `${api.token}\n`);
    }
    // Same instance, token restored (with a trailing newline, as projected tokens may have).
    expect((await src.get(ref("s3-creds", "accessKey")))?.toString()).toBe("AKIA-FROM-K8S");
  });
});

describe("S3 client helpers", () => {
  const cfg = (extra: string) => parseConfig(`bucket: b\n${extra}`);

  it("isAwsEndpoint", () => {
    expect(isAwsEndpoint("")).toBe(true);
    expect(isAwsEndpoint("s3.amazonaws.com")).toBe(true);
    expect(isAwsEndpoint("s3.eu-west-1.amazonaws.com:443")).toBe(true);
    expect(isAwsEndpoint("S3.US-EAST-2.AMAZONAWS.COM")).toBe(true);
    expect(isAwsEndpoint("s3.cn-north-1.amazonaws.com.cn")).toBe(true);
    expect(isAwsEndpoint("127.0.0.1:9000")).toBe(false);
    expect(isAwsEndpoint("minio.argo.svc:9000")).toBe(false);
    expect(isAwsEndpoint("storage.googleapis.com")).toBe(false);
    expect(isAwsEndpoint("notamazonaws.com")).toBe(false);
  });

  it("usePathStyle: auto → path for MinIO-like endpoints, virtual for AWS and the default", () => {
    expect(usePathStyle(cfg("endpoint: 127.0.0.1:9000\n"))).toBe(true);
    expect(usePathStyle(cfg("endpoint: minio.argo.svc:9000\n"))).toBe(true);
    expect(usePathStyle(cfg(""))).toBe(false);
    expect(usePathStyle(cfg("endpoint: s3.us-west-2.amazonaws.com\n"))).toBe(false);
  });

  it("usePathStyle: an explicit addressingStyle overrides the guess", () => {
    expect(usePathStyle(cfg("endpoint: s3.amazonaws.com\naddressingStyle: path\n"))).toBe(true);
    expect(usePathStyle(cfg("addressingStyle: path\n"))).toBe(true);
    expect(usePathStyle(cfg("endpoint: minio:9000\naddressingStyle: virtual-hosted\n"))).toBe(false);
  });

  it("endpointUrl: https by default, http with insecure, none without an endpoint", () => {
    expect(endpointUrl(cfg("endpoint: minio:9000\n"))).toBe("https://minio:9000");
    expect(endpointUrl(cfg("endpoint: minio:9000\ninsecure: true\n"))).toBe("http://minio:9000");
    expect(endpointUrl(cfg("endpoint: '[::1]:9000'\ninsecure: true\n"))).toBe("http://[::1]:9000");
    expect(endpointUrl(cfg(""))).toBeUndefined();
  });

  it("effectiveRegion: configured, then AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1", () => {
    const env = { AWS_REGION: "eu-central-1", AWS_DEFAULT_REGION: "ap-south-1" };
    expect(effectiveRegion(cfg("region: us-west-2\n"), env)).toBe("us-west-2");
    expect(effectiveRegion(cfg(""), env)).toBe("eu-central-1");
    expect(effectiveRegion(cfg(""), { AWS_DEFAULT_REGION: "ap-south-1" })).toBe("ap-south-1");
    expect(effectiveRegion(cfg(""), {})).toBe("us-east-1");
  });
});
