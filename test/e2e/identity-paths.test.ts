// The other AWS identity paths users mix up with EKS Pod Identity, end to end
// on loopback against a real MinIO (no namespace needed: the SDK accepts
// plain-HTTP container endpoints on 127.0.0.0/8):
//
// - roleARN chained on Pod Identity: the plugin's AssumeRole (source
//   credentials from the Pod Identity agent stand-in) goes to an STS stand-in
//   (AWS_ENDPOINT_URL_STS) that verifies the SigV4 signature made with the
//   pod's temporary credentials, then hands out real MinIO credentials for the
//   role's bucket. MinIO itself refuses AssumeRole from temporary credentials.
// - IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, and MinIO's own
//   AssumeRoleWithWebIdentity validating an RS256 JWT against a local OpenID
//   issuer's JWKS, with the role ARN MinIO derives for that provider.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanForSecrets } from "../support/ledger.js";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { type Agent, startAgentLocal } from "../support/pod-identity-agent.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";
import {
  type OidcIssuer,
  type StsStandin,
  minioOpenIdRoleArn,
  startOidcIssuer,
  startStsStandin,
} from "../support/sts-standin.js";

const POD_BUCKET = "pod-bucket";
const ROLE_BUCKET = "role-bucket";
const IRSA_BUCKET = "irsa-bucket";
const ROLE_ARN = "arn:aws:iam::123456789012:role/argo-artifacts";
const CLIENT_ID = "sts.amazonaws.com"; // the audience EKS puts in IRSA tokens

let work: string;
let oidc: OidcIssuer;
let minio: MinioServer;
let s3: S3Client;
let agent: Agent;
let sts: StsStandin;
let tokenFile: string;
let webTokenFile: string;
const secrets: string[] = [];
const plugins: PluginProcess[] = [];
let caseNo = 0;

const isolated = () => ({
  AWS_CONFIG_FILE: join(work, "no-aws-config"),
  AWS_SHARED_CREDENTIALS_FILE: join(work, "no-aws-credentials"),
  AWS_EC2_METADATA_DISABLED: "true",
  ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS: "10",
});

/** No keys; a new text per call, so a new credential cache in the plugin. */
function config(bucket: string, extra = ""): string {
  return `endpoint: ${minio.endpoint}\nbucket: ${bucket}\ninsecure: true\nregion: us-east-1\n${extra}# case ${++caseNo}\n`;
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

/** Save (file), ListObjects, Load, Delete through `plugin` with configuration `cfg`. */
async function roundTrip(
  plugin: PluginProcess,
  cfg: (bucket: string) => string,
  bucket: string,
  prefix: string,
): Promise<void> {
  const file = join(work, `${prefix}.txt`);
  writeFileSync(file, `data for ${prefix}`);
  const key = `${prefix}/obj.txt`;
  expect(await plugin.client.save(artifact(cfg(bucket), key), file)).toEqual({ success: true, error: "" });
  expect(await exists(bucket, key)).toBe(true);
  expect(await plugin.client.listObjects(artifact(cfg(bucket), prefix))).toEqual({ objects: [key], error: "" });
  const dest = join(work, `${prefix}.tmp`);
  expect(await plugin.client.load(artifact(cfg(bucket), key), dest)).toEqual({ success: true, error: "" });
  expect(readFileSync(dest, "utf8")).toBe(`data for ${prefix}`);
  expect(await plugin.client.delete(artifact(cfg(bucket), key))).toEqual({ success: true, error: "" });
  expect(await exists(bucket, key)).toBe(false);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "identity-paths-"));
  oidc = await startOidcIssuer();
  minio = await startMinio({
    env: {
      MINIO_IDENTITY_OPENID_CONFIG_URL: oidc.configUrl,
      MINIO_IDENTITY_OPENID_CLIENT_ID: CLIENT_ID,
      MINIO_IDENTITY_OPENID_ROLE_POLICY: "readwrite",
    },
  });
  secrets.push(minio.secretKey);
  s3 = new S3Client({
    endpoint: minio.url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
  });
  for (const b of [POD_BUCKET, ROLE_BUCKET, IRSA_BUCKET]) await s3.send(new CreateBucketCommand({ Bucket: b }));

  tokenFile = join(work, "eks-pod-identity-token");
  const podToken = `pod-identity-${randomBytes(16).toString("hex")}`;
  secrets.push(podToken);
  writeFileSync(tokenFile, podToken);
  agent = await startAgentLocal({
    listen: [{ host: "127.0.0.1", port: 0 }],
    tokenFile,
    minio: { url: minio.url, accessKey: minio.accessKey, secretKey: minio.secretKey },
    bucket: POD_BUCKET,
  });
  sts = await startStsStandin({
    minio: { url: minio.url, accessKey: minio.accessKey, secretKey: minio.secretKey },
    roles: { [ROLE_ARN]: ROLE_BUCKET },
    lookupCaller: async (ak) => (await agent.issued())[ak],
  });
  webTokenFile = join(work, "irsa-token");
}, 120_000);

afterAll(async () => {
  const codes = await Promise.all(plugins.map((p) => p.stop()));
  const output = plugins.map((p) => p.output()).join("\n");
  const issued = agent ? Object.values(await agent.issued()) : [];
  await agent?.stop();
  await sts?.stop();
  s3?.destroy();
  await minio?.stop();
  await oidc?.stop();
  rmSync(work, { recursive: true, force: true });
  expect(codes).toEqual(plugins.map(() => 0));
  const all: Record<string, string> = {};
  secrets.forEach((s, i) => (all[`secret ${i + 1}`] = s));
  issued.forEach((c, i) =>
    Object.assign(all, {
      [`issued secret key ${i + 1}`]: c.secretAccessKey,
      [`issued session token ${i + 1}`]: c.sessionToken,
    }),
  );
  expect(scanForSecrets("role ARN (STS) and IRSA web identity", [output], all)).toEqual([]);
});

describe("roleARN chained on EKS Pod Identity (STS stand-in)", () => {
  let plugin: PluginProcess;
  const withRole = (roleArn: string) => (bucket: string) => config(bucket, `roleARN: ${roleArn}\n`);

  beforeAll(async () => {
    plugin = await startPlugin({
      ...isolated(),
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${agent.port}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      AWS_ENDPOINT_URL_STS: sts.url,
    });
    plugins.push(plugin);
  });

  it("Save, ListObjects, Load and Delete use the role's credentials, assumed with the pod's", async () => {
    const agentBefore = (await agent.requests()).length;
    const stsBefore = sts.requests.length;
    const cfg = withRole(ROLE_ARN);
    const fixed = cfg(ROLE_BUCKET); // one configuration text: one client, one credential cache
    await roundTrip(plugin, () => fixed, ROLE_BUCKET, "chained");

    const agentReqs = (await agent.requests()).slice(agentBefore);
    expect(agentReqs.map((r) => r.status)).toEqual([200]);
    const stsReqs = sts.requests.slice(stsBefore);
    expect(stsReqs).toHaveLength(1);
    expect(stsReqs[0]).toMatchObject({ action: "AssumeRole", roleArn: ROLE_ARN, status: 200 });
    expect(stsReqs[0]!.roleSessionName).toMatch(/^argo-s3-artifact-plugin-/);
    // The AssumeRole call was signed with the credentials the Pod Identity agent handed out.
    expect(stsReqs[0]!.callerAccessKey).toBe(agentReqs[0]!.accessKeyId);
  });

  it("the role's identity, not the pod's, reaches S3 (and vice versa)", async () => {
    const underRole = await plugin.client.listObjects(artifact(withRole(ROLE_ARN)(POD_BUCKET), "x"));
    expect(underRole.error).toContain("AccessDenied");
    expect(underRole.error).toContain(`s3://${POD_BUCKET}/`);
    const asPod = await plugin.client.listObjects(artifact(config(ROLE_BUCKET, "useSDKCreds: true\n"), "x"));
    expect(asPod.error).toContain("AccessDenied");
    expect(asPod.error).toContain(`s3://${ROLE_BUCKET}/`);
    const podOwn = await plugin.client.isDirectory(artifact(config(POD_BUCKET, "useSDKCreds: true\n"), "x"));
    expect(podOwn.error).toBe("");
  });

  it("a role the pod may not assume fails naming the role and STS's answer", async () => {
    const denied = "arn:aws:iam::123456789012:role/not-for-this-pod";
    const res = await plugin.client.listObjects(artifact(withRole(denied)(ROLE_BUCKET), "x"));
    expect(res.error).toContain(`assuming role ${denied}`);
    expect(res.error).toContain("AccessDenied: not authorized to perform: sts:AssumeRole");
    expect(sts.requests.at(-1)).toMatchObject({ roleArn: denied, status: 403, code: "AccessDenied" });
    for (const s of secrets) expect(res.error).not.toContain(s);
  });
});

describe("IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (MinIO AssumeRoleWithWebIdentity, local OpenID issuer)", () => {
  let plugin: PluginProcess;
  const roleArn = () => minioOpenIdRoleArn(CLIENT_ID);
  const writeWebToken = (foreignKey = false) => {
    const t = oidc.token({ sub: "system:serviceaccount:argo:default", aud: CLIENT_ID }, { foreignKey });
    secrets.push(t);
    writeFileSync(webTokenFile, t);
  };

  beforeAll(async () => {
    writeWebToken();
    plugin = await startPlugin({
      ...isolated(),
      AWS_ROLE_ARN: roleArn(),
      AWS_WEB_IDENTITY_TOKEN_FILE: webTokenFile,
      AWS_ROLE_SESSION_NAME: "argo-irsa-test",
      AWS_ENDPOINT_URL_STS: minio.url,
      AWS_REGION: "us-east-1",
    });
    plugins.push(plugin);
  });

  it("Save, ListObjects, Load and Delete work with web-identity credentials", async () => {
    const fixed = config(IRSA_BUCKET, "useSDKCreds: true\n");
    await roundTrip(plugin, () => fixed, IRSA_BUCKET, "irsa");
  });

  it("the token file is read per fetch: a token MinIO cannot verify fails clearly, a good one works again", async () => {
    writeWebToken(true);
    const bad = await plugin.client.listObjects(artifact(config(IRSA_BUCKET, "useSDKCreds: true\n"), "x"));
    expect(bad.error).toContain("could not obtain credentials from the AWS SDK default credential chain");
    expect(bad.error).toContain(
      `(credentials source: web identity, AWS_ROLE_ARN=${roleArn()}, AWS_WEB_IDENTITY_TOKEN_FILE=${webTokenFile})`,
    );
    expect(bad.error).toMatch(/InvalidParameterValue: .*verification/); // MinIO checked the signature against the JWKS
    for (const s of secrets) expect(bad.error).not.toContain(s);
    writeWebToken();
    const good = await plugin.client.isDirectory(artifact(config(IRSA_BUCKET, "useSDKCreds: true\n"), "x"));
    expect(good.error).toBe("");
  });
});
