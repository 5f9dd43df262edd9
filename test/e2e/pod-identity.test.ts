// EKS Pod Identity end to end, for real: a network namespace whose loopback
// device carries the agent's link-local addresses (169.254.170.23/32 and
// fd00:ec2::23/128), and inside it MinIO, a Pod Identity agent stand-in on port
// 80 of those addresses that hands out real MinIO STS credentials (limited to
// one bucket), and the plugin with only AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE set: no keys in its environment or
// configuration. The test drives the plugin from the host over its unix
// socket, as Argo's executor does, and checks objects through a forwarder.
//
// Needs root and iproute2 (`ip netns`). Elsewhere the file is skipped with the
// reason printed, except under CI=true, where it fails instead.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanForSecrets } from "../support/ledger.js";
import {
  NetNs,
  type NsMinio,
  type NsPlugin,
  POD_IDENTITY_V4,
  POD_IDENTITY_V6,
  netnsSupport,
  removeTree,
  startMinioInNetns,
  startPluginInNetns,
  tempBase,
} from "../support/netns.js";
import {
  type Agent,
  type AgentRequest,
  type IssuedCredential,
  startAgentInNetns,
} from "../support/pod-identity-agent.js";
import { artifact } from "../support/plugin.js";

const support = netnsSupport();
const IN_CI = process.env["CI"] === "true" || process.env["CI"] === "1";
const SKIP = !support.ok && !IN_CI;
if (!support.ok) {
  console.warn(`pod-identity tests ${IN_CI ? "cannot run, and CI=true: failing" : "skipped"}: ${support.reason}`);
}

const BUCKET = "pod-bucket";
const OTHER_BUCKET = "other-bucket";
const V4_URI = `http://${POD_IDENTITY_V4}/v1/credentials`;
const V6_URI = `http://[${POD_IDENTITY_V6}]/v1/credentials`;
/** The plugin's bound on one credential fetch, short here so the "agent hangs" case is quick. */
const CREDENTIALS_TIMEOUT_S = 4;

let base: string;
let work: string;
let tokenFile: string;
let ns: NetNs | undefined;
let minio: NsMinio | undefined;
let agent: Agent | undefined;
let v4: NsPlugin;
let v6: NsPlugin;
const plugins: NsPlugin[] = [];
const tokens: string[] = [];
let caseNo = 0;

const sha = (t: string) => createHash("sha256").update(t).digest("hex").slice(0, 16);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A configuration with no credentials in it. Every call gives a new text (a
 * YAML comment), hence a new S3 client and credential cache in the plugin, so
 * a test starts from "no credentials fetched yet".
 */
function config(bucket = BUCKET): string {
  return `endpoint: ${minio!.endpoint}\nbucket: ${bucket}\ninsecure: true\nregion: us-east-1\nuseSDKCreds: true\n# case ${++caseNo}\n`;
}

/** Rotates the projected token the way the kubelet does: new content renamed into place. */
function rotateToken(): string {
  const t = `eyJhbGciOiJSUzI1NiJ9.pod-identity-${randomBytes(16).toString("hex")}.sig`;
  tokens.push(t);
  writeFileSync(`${tokenFile}.new`, t);
  renameSync(`${tokenFile}.new`, tokenFile);
  return t;
}

async function startPodPlugin(fullUri: string): Promise<NsPlugin> {
  const p = await startPluginInNetns(
    ns!,
    {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: fullUri,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      // Nothing else the SDK chain could find: no shared config files, no keys, no IRSA.
      AWS_CONFIG_FILE: join(base, "no-aws-config"),
      AWS_SHARED_CREDENTIALS_FILE: join(base, "no-aws-credentials"),
      ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS: String(CREDENTIALS_TIMEOUT_S),
    },
    base,
  );
  plugins.push(p);
  return p;
}

/** Agent requests made after `since` (a count from before). */
async function requestsSince(since: number): Promise<AgentRequest[]> {
  return (await agent!.requests()).slice(since);
}
const requestCount = async () => (await agent!.requests()).length;

async function objectText(bucket: string, key: string): Promise<string> {
  const out = await minio!.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return out.Body!.transformToString();
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await minio!.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

/** A credentials error must name the endpoint and the cause and carry no secret. */
function expectCredentialsError(error: string, ...parts: string[]): void {
  expect(error).toContain("could not obtain credentials");
  for (const p of parts) expect(error).toContain(p);
  for (const t of tokens) expect(error).not.toContain(t);
  expect(error).not.toContain(minio!.secretKey);
}

describe.skipIf(SKIP)("EKS Pod Identity (network namespace with 169.254.170.23 and fd00:ec2::23)", () => {
  beforeAll(async () => {
    if (!support.ok) throw new Error(`CI=true and network namespaces are unavailable: ${support.reason}`);
    base = tempBase("pod-identity-");
    work = join(base, "work");
    mkdirSync(work);
    tokenFile = join(base, "eks-pod-identity-token");
    rotateToken();
    ns = NetNs.create();
    minio = await startMinioInNetns(ns, base);
    await minio.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await minio.s3.send(new CreateBucketCommand({ Bucket: OTHER_BUCKET }));
    await minio.s3.send(new PutObjectCommand({ Bucket: OTHER_BUCKET, Key: "private.txt", Body: "not for this pod" }));
    agent = await startAgentInNetns(ns, base, {
      listen: [
        { host: POD_IDENTITY_V4, port: 80 },
        { host: POD_IDENTITY_V6, port: 80 },
      ],
      tokenFile,
      minio: { url: minio.url, accessKey: minio.accessKey, secretKey: minio.secretKey },
      bucket: BUCKET,
    });
    [v4, v6] = await Promise.all([startPodPlugin(V4_URI), startPodPlugin(V6_URI)]);
  }, 120_000);

  afterAll(async () => {
    const codes = await Promise.all(plugins.map((p) => p.stop()));
    const outputs = plugins.map((p) => p.output()).join("\n");
    const issued: Record<string, IssuedCredential> = agent ? await agent.issued().catch(() => ({})) : {};
    const rootSecret = minio?.secretKey;
    await agent?.stop();
    await minio?.stop();
    await ns?.destroy();
    removeTree(base);
    if (!support.ok) return;
    expect(codes).toEqual(plugins.map(() => 0));
    // Nothing secret ever reaches the plugin's output: tokens, MinIO's root key, issued credentials.
    const secrets: Record<string, string | undefined> = { "MinIO root secret key": rootSecret };
    tokens.forEach((t, i) => (secrets[`pod identity token ${i + 1}`] = t));
    Object.values(issued).forEach((c, i) =>
      Object.assign(secrets, {
        [`issued secret key ${i + 1}`]: c.secretAccessKey,
        [`issued session token ${i + 1}`]: c.sessionToken,
      }),
    );
    expect(scanForSecrets("EKS Pod Identity", [outputs], secrets)).toEqual([]);
  });

  it("the namespace's loopback carries the agent's addresses", () => {
    const addrs = ns!.addresses();
    expect(addrs).toContain(`inet ${POD_IDENTITY_V4}/32`);
    expect(addrs).toContain(`inet6 ${POD_IDENTITY_V6}/128`);
  });

  describe.each([
    ["IPv4", V4_URI, `${POD_IDENTITY_V4}:80`, () => v4],
    ["IPv6", V6_URI, `${POD_IDENTITY_V6}:80`, () => v6],
  ])("%s agent (%s)", (label, _uri, listener, plugin) => {
    it("Save, ListObjects, Load and Delete succeed with the agent's credentials, fetched once", async () => {
      const before = await requestCount();
      const cfg = config();
      const key = `${label}/file.txt`;
      const file = join(work, `${label}.txt`);
      writeFileSync(file, `hello over ${label}`);
      const dir = join(work, `${label}-dir`);
      mkdirSync(join(dir, "sub"), { recursive: true });
      writeFileSync(join(dir, "a.txt"), "a");
      writeFileSync(join(dir, "sub", "b.txt"), "b");

      expect(await plugin().client.save(artifact(cfg, key), file)).toEqual({ success: true, error: "" });
      expect(await plugin().client.save(artifact(cfg, `${label}/dir`), dir)).toEqual({ success: true, error: "" });
      expect(await objectText(BUCKET, key)).toBe(`hello over ${label}`);

      const listed = await plugin().client.listObjects(artifact(cfg, `${label}/dir`));
      expect(listed.error).toBe("");
      expect([...listed.objects].sort()).toEqual([`${label}/dir/a.txt`, `${label}/dir/sub/b.txt`]);

      const dest = join(work, `${label}-loaded.tmp`);
      expect(await plugin().client.load(artifact(cfg, key), dest)).toEqual({ success: true, error: "" });
      expect(readFileSync(dest, "utf8")).toBe(`hello over ${label}`);

      expect(await plugin().client.delete(artifact(cfg, key))).toEqual({ success: true, error: "" });
      expect(await plugin().client.delete(artifact(cfg, `${label}/dir/`))).toEqual({ success: true, error: "" });
      expect(await exists(BUCKET, key)).toBe(false);
      expect(await exists(BUCKET, `${label}/dir/a.txt`)).toBe(false);

      // One fetch from the agent, on the link-local address, with the projected token.
      const reqs = await requestsSince(before);
      expect(reqs.map((r) => ({ listener: r.listener, path: r.path, tokenSha: r.tokenSha, status: r.status }))).toEqual(
        [{ listener, path: "/v1/credentials", tokenSha: sha(tokens.at(-1)!), status: 200 }],
      );
    });

    it("an access outside the session policy fails with AccessDenied naming bucket and endpoint", async () => {
      const cfg = config(OTHER_BUCKET);
      const listed = await plugin().client.listObjects(artifact(cfg, "anything"));
      expect(listed.error).toContain("AccessDenied");
      expect(listed.error).toContain(`s3://${OTHER_BUCKET}/`);
      expect(listed.error).toContain(`endpoint ${minio!.url}`);

      const dest = join(work, `${label}-private.tmp`);
      const loaded = await plugin().client.load(artifact(cfg, "private.txt"), dest);
      expect(loaded.success).toBe(false);
      // Load starts with HeadObject, whose 403 has no body: S3's code is not available there.
      expect(loaded.error).toMatch(/AccessDenied|HTTP 403/);
      expect(loaded.error).toContain(`s3://${OTHER_BUCKET}/private.txt`);

      const file = join(work, `${label}-intruder.txt`);
      writeFileSync(file, "x");
      const saved = await plugin().client.save(artifact(cfg, `${label}-intruder.txt`), file);
      expect(saved.success).toBe(false);
      expect(saved.error).toContain("AccessDenied");
      expect(await exists(OTHER_BUCKET, `${label}-intruder.txt`)).toBe(false);
    });
  });

  describe("rotation and expiry", () => {
    it("concurrent RPCs share one fetch per credential lifetime", async () => {
      await agent!.setMode({});
      const cfg = config();
      const file = join(work, "burst.txt");
      writeFileSync(file, "burst");
      const burst = (n: number) =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            i % 2 === 0
              ? v4.client.save(artifact(cfg, `burst/${i}.txt`), file)
              : v4.client.isDirectory(artifact(cfg, "burst")),
          ),
        );
      const before = await requestCount();
      for (const r of await burst(32)) expect(r.error).toBe("");
      for (const r of await burst(32)) expect(r.error).toBe("");
      expect(await requestsSince(before)).toHaveLength(1);

      // Credentials the SDK treats as due for refresh 2 s from now (it refreshes 5 min before Expiration).
      await agent!.setMode({ expiresInSeconds: 300 + 2 });
      const cfg2 = config();
      const before2 = await requestCount();
      const burst2 = (n: number) =>
        Promise.all(Array.from({ length: n }, () => v4.client.isDirectory(artifact(cfg2, "burst"))));
      for (const r of await burst2(24)) expect(r.error).toBe("");
      expect(await requestsSince(before2)).toHaveLength(1);
      await sleep(2_500);
      for (const r of await burst2(24)) expect(r.error).toBe(""); // these trigger one background refresh
      for (const r of await burst2(24)) expect(r.error).toBe("");
      const reqs = await requestsSince(before2);
      expect(reqs).toHaveLength(2);
      expect(reqs[1]!.accessKeyId).not.toBe(reqs[0]!.accessKeyId);
    });

    it("the token file is re-read on every fetch, and refreshes at the rollover fail no request", async () => {
      const LIFETIME_S = 3; // seconds until the SDK's 5-minute refresh window starts
      await agent!.setMode({ expiresInSeconds: 300 + LIFETIME_S });
      const cfg = config();
      const before = await requestCount();
      const t0 = Date.now();
      const first = await v4.client.listObjects(artifact(cfg, "rotation"));
      expect(first.error).toContain("not found"); // credentials worked; the prefix is empty
      const oldToken = tokens.at(-1)!;
      const newToken = rotateToken(); // the agent now refuses the old token

      const file = join(work, "rotation.txt");
      writeFileSync(file, "rotation");
      const results: string[] = [];
      while (Date.now() - t0 < (2 * LIFETIME_S + 1) * 1000) {
        const round = await Promise.all([
          v4.client.isDirectory(artifact(cfg, "rotation")),
          v4.client.isDirectory(artifact(cfg, "rotation")),
          v4.client.save(artifact(cfg, "rotation/file.txt"), file),
        ]);
        results.push(...round.map((r) => r.error));
        await sleep(100);
      }
      const elapsed = (Date.now() - t0) / 1000;
      expect(results.filter((e) => e !== "")).toEqual([]);

      const reqs = await requestsSince(before);
      // Every fetch was answered (none refused for a stale token), the first with the old token, all later with the new one.
      expect(reqs.map((r) => r.status)).toEqual(reqs.map(() => 200));
      expect(reqs[0]!.tokenSha).toBe(sha(oldToken));
      expect(reqs.slice(1).map((r) => r.tokenSha)).toEqual(reqs.slice(1).map(() => sha(newToken)));
      // Refreshed as each lifetime ran out, and not more often than that.
      expect(reqs.length).toBeGreaterThanOrEqual(2);
      expect(reqs.length).toBeLessThanOrEqual(Math.floor(elapsed / LIFETIME_S) + 1);
    });

    it("credentials past their Expiration are fetched again before the next request, which succeeds", async () => {
      await agent!.setMode({ expiresInSeconds: 2 });
      const cfg = config();
      const before = await requestCount();
      expect((await v4.client.isDirectory(artifact(cfg, "expiry"))).error).toBe("");
      await sleep(2_500); // idle past the reported Expiration
      expect((await v4.client.isDirectory(artifact(cfg, "expiry"))).error).toBe("");
      const reqs = await requestsSince(before);
      expect(reqs.map((r) => r.status)).toEqual(reqs.map(() => 200));
      // The second RPC came after the first credentials' Expiration and got ones fetched after it.
      const firstExpiry = Date.parse(reqs[0]!.expiration!);
      expect(reqs.some((r) => r.at >= firstExpiry)).toBe(true);
      await agent!.setMode({});
    });
  });

  describe("failures name the credentials endpoint and the cause", () => {
    it("agent answers 403: Save fails (success=false)", async () => {
      await agent!.setMode({ status: 403 });
      const file = join(work, "denied.txt");
      writeFileSync(file, "x");
      const res = await v4.client.save(artifact(config(), "denied.txt"), file);
      await agent!.setMode({});
      expect(res.success).toBe(false);
      expectCredentialsError(res.error, V4_URI, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "HTTP 403");
      expect(await exists(BUCKET, "denied.txt")).toBe(false);
    });

    it("agent answers 503: ListObjects fails after the SDK's retries", async () => {
      await agent!.setMode({ status: 503 });
      const before = await requestCount();
      const res = await v6.client.listObjects(artifact(config(), "x"));
      await agent!.setMode({});
      expectCredentialsError(res.error, V6_URI, "HTTP 503");
      expect((await requestsSince(before)).length).toBeGreaterThanOrEqual(4); // the SDK tried more than once
    });

    it("agent accepts but never answers: the RPC fails after the bound, and recovers once the agent does", async () => {
      await agent!.setMode({ hang: true });
      const cfg = config();
      const started = Date.now();
      const res = await v4.client.listObjects(artifact(cfg, "x"));
      const took = Date.now() - started;
      expectCredentialsError(res.error, V4_URI, `no answer within ${CREDENTIALS_TIMEOUT_S} s`);
      expect(took).toBeLessThan((CREDENTIALS_TIMEOUT_S + 5) * 1000);
      await agent!.setMode({}); // the agent "restarts": hanging connections are dropped
      const again = await v4.client.listObjects(artifact(cfg, "x"));
      expect(again.error).toContain("not found"); // credentials worked this time
    });

    it("token file missing: Load fails naming the file", async () => {
      renameSync(tokenFile, `${tokenFile}.away`);
      try {
        const res = await v4.client.load(artifact(config(), "x"), join(work, "x.tmp"));
        expect(res.success).toBe(false);
        expectCredentialsError(res.error, V4_URI, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile}`, "ENOENT");
      } finally {
        renameSync(`${tokenFile}.away`, tokenFile);
      }
    });

    it("token file unreadable: ListObjects fails naming the file", async () => {
      // Root reads any file regardless of its mode, so "unreadable" is a directory in its place.
      renameSync(tokenFile, `${tokenFile}.away`);
      mkdirSync(tokenFile);
      try {
        const res = await v4.client.listObjects(artifact(config(), "x"));
        expectCredentialsError(res.error, V4_URI, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile}`, "EISDIR");
      } finally {
        rmSync(tokenFile, { recursive: true });
        renameSync(`${tokenFile}.away`, tokenFile);
      }
    });

    it("token with a trailing newline (the SDK sends the file verbatim): fails naming the file", async () => {
      const good = readFileSync(tokenFile, "utf8");
      writeFileSync(tokenFile, `${good}\n`);
      try {
        const res = await v4.client.listObjects(artifact(config(), "x"));
        expectCredentialsError(
          res.error,
          V4_URI,
          `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile}`,
          "not a valid header value",
        );
      } finally {
        writeFileSync(tokenFile, good);
      }
    });

    it("a plain-HTTP full URI to a host the SDK does not allow is refused before any connection", async () => {
      // Inside the namespace 10.0.0.1 is not even routable; the SDK refuses the URL before trying.
      const bad = await startPodPlugin("http://10.0.0.1/v1/credentials");
      const started = Date.now();
      const res = await bad.client.listObjects(artifact(config(), "x"));
      expectCredentialsError(
        res.error,
        "http://10.0.0.1/v1/credentials",
        "refuses this plain-HTTP host",
        "169.254.170.23",
        "[fd00:ec2::23]",
      );
      expect(Date.now() - started).toBeLessThan(1000); // no connection attempt, no retries
    });
  });
});
