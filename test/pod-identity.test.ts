// EKS Pod Identity end to end, for real: a network namespace whose loopback
// device carries the agent's link-local addresses (169.254.170.23 and
// fd00:ec2::23), and inside it MinIO, a Pod Identity agent stand-in handing out
// real MinIO STS credentials on port 80 of those addresses, and the plugin with
// only AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
// (no keys anywhere). The test drives the plugin from the host over its unix
// socket, exactly as Argo's executor does.
//
// Needs root and iproute2 (`ip netns`). Elsewhere the file is skipped with the
// reason printed, except under CI=true, where it fails instead.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetNs, type NsMinio, type NsPlugin, POD_IDENTITY_V4, POD_IDENTITY_V6, netnsSupport, removeTree, startMinioInNetns, startPluginInNetns, tempBase } from "./support/netns.js";
import { type Agent, startAgentInNetns } from "./support/pod-identity-agent.js";
import { artifact } from "./support/plugin.js";

const support = netnsSupport();
const IN_CI = process.env["CI"] === "true" || process.env["CI"] === "1";
const SKIP = !support.ok && !IN_CI;
if (!support.ok) {
  console.warn(`pod-identity tests ${IN_CI ? "cannot run (CI=true: failing)" : "skipped"}: ${support.reason}`);
}

const BUCKET = "pod-bucket";
const OTHER_BUCKET = "other-bucket";
const V4_URI = `http://${POD_IDENTITY_V4}/v1/credentials`;
const V6_URI = `http://[${POD_IDENTITY_V6}]/v1/credentials`;

let base: string;
let ns: NetNs | undefined;
let minio: NsMinio | undefined;
let agent: Agent | undefined;
let tokenFile: string;
let work: string;
const plugins: NsPlugin[] = [];
const tokens: string[] = [];
let tagSeq = 0;

/**
 * A configuration with no credentials in it. Each call gives a new text (a
 * YAML comment), hence a new S3 client and credential cache in the plugin, so
 * every test starts from "no credentials yet".
 */
function config(bucket = BUCKET): string {
  return `endpoint: ${minio!.endpoint}\nbucket: ${bucket}\ninsecure: true\nregion: us-east-1\nuseSDKCreds: true\n# case ${++tagSeq}\n`;
}

const tokenSha = (t: string) => createSha(t);
function createSha(t: string): string {
  // same as the agent's: first 16 hex digits of SHA-256
  return require_crypto().createHash("sha256").update(t).digest("hex").slice(0, 16);
}
import * as cryptoMod from "node:crypto";
const require_crypto = () => cryptoMod;

/** Rotates the projected token the way the kubelet does: a new file renamed into place. */
function writeToken(): string {
  const t = `eyJhbGciOiJSUzI1NiJ9.pod-identity-${randomBytes(16).toString("hex")}.sig`;
  tokens.push(t);
  writeFileSync(`${tokenFile}.new`, t);
  renameSync(`${tokenFile}.new`, tokenFile);
  return t;
}

function pluginEnv(fullUri: string): Record<string, string> {
  return {
    AWS_CONTAINER_CREDENTIALS_FULL_URI: fullUri,
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
    AWS_CONFIG_FILE: join(base, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(base, "no-aws-credentials"),
  };
}

async function startPodPlugin(fullUri: string): Promise<NsPlugin> {
  const p = await startPluginInNetns(ns!, pluginEnv(fullUri), base);
  plugins.push(p);
  return p;
}

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

describe.skipIf(SKIP)("EKS Pod Identity (network namespace with 169.254.170.23 and fd00:ec2::23)", () => {
  let v4: NsPlugin;
  let v6: NsPlugin;

  beforeAll(async () => {
    if (!support.ok) throw new Error(`CI=true and network namespaces are unavailable: ${support.reason}`);
    base = tempBase("pod-identity-");
    work = join(base, "work");
    mkdirSync(work);
    tokenFile = join(base, "eks-pod-identity-token");
    writeToken();
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
    const issued = agent ? await agent.issued().catch(() => ({})) : {};
    await agent?.stop();
    await minio?.stop();
    await ns?.destroy();
    removeTree(base);
    if (!support.ok) return;
    expect(codes.every((c) => c === 0)).toBe(true);
    // Nothing secret ever reaches the plugin's output: tokens, MinIO's root key, issued secrets.
    for (const t of tokens) expect(outputs).not.toContain(t);
    if (minio) expect(outputs).not.toContain(minio.secretKey);
    for (const sk of Object.values(issued)) expect(outputs).not.toContain(sk);
  });

  it("ping", async () => {
    console.log(ns!.addresses());
    const src = join(work, "a.txt");
    writeFileSync(src, "hello pod identity");
    const a = artifact(config(), "pi/a.txt");
    console.log(await v4.client.save(a, src));
    console.log(await v4.client.listObjects(artifact(config(), "pi")));
    console.log(await v6.client.listObjects(artifact(config(OTHER_BUCKET), "pi")));
    console.log(await agent!.requests());
  });

  it("failures", async () => {
    await agent!.setMode({ status: 403 });
    let t = Date.now();
    console.log(await v4.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    await agent!.setMode({ status: 503 });
    t = Date.now();
    console.log(await v4.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    await agent!.setMode({ hang: true });
    t = Date.now();
    console.log(await v4.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    await agent!.setMode({});
    renameSync(tokenFile, tokenFile + ".away");
    t = Date.now();
    console.log(await v4.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    mkdirSync(tokenFile);
    t = Date.now();
    console.log(await v4.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    rmSync(tokenFile, { recursive: true });
    renameSync(tokenFile + ".away", tokenFile);
    const bad = await startPodPlugin("http://10.0.0.1/v1/credentials");
    t = Date.now();
    console.log(await bad.client.listObjects(artifact(config(), "pi")), Date.now() - t);
    console.log((await agent!.requests()).length);
  });
});
