// The shared argo-server sidecar serves every UI user with argo-server's
// identity; any workflow author controls the whole configuration. Hostile
// configurations from such an author:
//  - naming one of argo-server's secrets as keys, with the author's own host as
//    endpoint (the secret would travel there in Authorization): refused in
//    shared mode unless the operator allowed that secret, and nothing is sent;
//  - pointing the endpoint at a link-local / cloud metadata address, literally
//    or through a name that resolves there: refused always, before connecting;
//  - any endpoint outside the operator's allow list, when one is set.
import { createServer, type IncomingMessage, type Server } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, selfSignedCert, startMinio } from "../../scripts/lib/minio.mjs";
import { type KubeApi, startKubeApi } from "../support/kube-api.js";
import { tally } from "../support/ledger.js";
import { adminClient } from "../support/minio-access.js";
import { NetNs, netnsSupport, removeTree, startPluginInNetns, tempBase } from "../support/netns.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const LEAK_AK = "AKIAARGOSERVERLEAK01";
const LEAK_SK = "argo-server-secret-key-never-leaves";

let minio: MinioServer;
let kube: KubeApi;
let attacker: Server;
let attackerPort: number;
const seen: string[] = [];

function record(req: IncomingMessage): void {
  seen.push(`${req.method} ${req.url} ${JSON.stringify(req.headers)}`);
}

beforeAll(async () => {
  minio = await startMinio();
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: "shared" }));
  await adminClient(minio).send(new PutObjectCommand({ Bucket: "shared", Key: "dir/a.txt", Body: "a" }));
  kube = await startKubeApi();
  kube.setSecret("argo-server-admin", { accessKey: LEAK_AK, secretKey: LEAK_SK, ca: "not a pem" });
  kube.setSecret("minio-keys", { accessKey: minio.accessKey, secretKey: minio.secretKey });
  // The author's own "S3": records whatever reaches it and answers like an empty bucket.
  attacker = createServer((req, res) => {
    record(req);
    req.resume();
    res.writeHead(200, { "content-type": "application/xml" });
    res.end(
      '<?xml version="1.0"?><ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>',
    );
  });
  await new Promise<void>((r) => attacker.listen(0, "127.0.0.1", r));
  attackerPort = (attacker.address() as { port: number }).port;
}, 600_000);

afterAll(async () => {
  attacker?.closeAllConnections();
  attacker?.close();
  await kube?.stop();
  await minio?.stop();
});

const loopbackStores = () => `127.0.0.1:${attackerPort},${minio.endpoint}`;
const readyLine = (p: PluginProcess) =>
  JSON.parse(
    p
      .output()
      .split("\n")
      .find((l) => l.includes('"msg":"ready"'))!,
  ) as { shared: boolean; sharedBecause: string };
const keysFrom = (name: string) =>
  `accessKeySecret: {name: ${name}, key: accessKey}\nsecretKeySecret: {name: ${name}, key: secretKey}\n`;

describe("shared mode (the argo-server sidecar)", () => {
  let plugin: PluginProcess;
  beforeAll(async () => {
    // The author's host and MinIO are on loopback here: listed, as an operator lists a store that really is there.
    plugin = await startPlugin({
      ...kube.env,
      ARGO_S3_PLUGIN_SHARED: "true",
      ARGO_S3_PLUGIN_ALLOWED_SECRETS: "minio-keys",
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: loopbackStores(),
    });
  });
  afterAll(async () => {
    expect(await plugin?.stop()).toBe(0);
  });

  it("reads no secret a configuration names unless allowed: every RPC argo-server serves is refused, nothing reaches the author's host", async () => {
    const readsBefore = kube.requests.filter((r) => r.includes("argo-server-admin")).length;
    const hostile = [
      `endpoint: 127.0.0.1:${attackerPort}\ninsecure: true\nbucket: loot\n${keysFrom("argo-server-admin")}`,
      `endpoint: 127.0.0.1:${attackerPort}\ninsecure: true\nbucket: loot\n${keysFrom("minio-keys")}sessionTokenSecret: {name: argo-server-admin, key: secretKey}\n`,
      `endpoint: 127.0.0.1:${attackerPort}\nbucket: loot\n${keysFrom("minio-keys")}caSecret: {name: argo-server-admin, key: ca}\n`,
    ];
    for (const cfg of hostile) {
      const a = artifact(cfg, "dir");
      const results = [
        (await plugin.client.listObjects(a)).error,
        (await plugin.client.isDirectory(a)).error,
        (await plugin.client.openStream(a)).frames.at(-1)?.error ?? "",
      ];
      for (const error of results) {
        tally({ suite: "hostile: argo-server's secrets named by a workflow", hostileTried: 1 });
        expect(error).toContain('secret "argo-server-admin"');
        expect(error).toContain("ARGO_S3_PLUGIN_ALLOWED_SECRETS");
        tally({ suite: "hostile: argo-server's secrets named by a workflow", hostileRefused: 1 });
      }
    }
    expect(seen.join("\n")).not.toContain(LEAK_AK);
    expect(seen.filter((s) => s.includes("authorization"))).toEqual([]);
    // Not even read: the refusal comes before the Kubernetes API is asked.
    expect(kube.requests.filter((r) => r.includes("argo-server-admin")).length).toBe(readsBefore);
    expect(plugin.output()).not.toContain(LEAK_SK);
  });

  it('a secret name equal to an allowed "name/key" entry is not that entry: refused as a name Kubernetes cannot have, the API never asked', async () => {
    const perKey = await startPlugin({
      ...kube.env,
      ARGO_S3_PLUGIN_SHARED: "true",
      ARGO_S3_PLUGIN_ALLOWED_SECRETS: "minio-keys/accessKey,minio-keys/secretKey",
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: loopbackStores(),
    });
    try {
      const before = kube.requests.length;
      const cfg = `endpoint: 127.0.0.1:${attackerPort}\ninsecure: true\nbucket: loot\naccessKeySecret: {name: minio-keys/accessKey, key: x}\nsecretKeySecret: {name: minio-keys/secretKey, key: x}\n`;
      const { error } = await perKey.client.listObjects(artifact(cfg, "dir"));
      expect(error).toContain("accessKeySecret.name");
      expect(error).toContain("not a Kubernetes secret name");
      expect(kube.requests.slice(before)).toEqual([]);
      // The entries themselves still allow those keys.
      const ok = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n${keysFrom("minio-keys")}`;
      expect(await perKey.client.listObjects(artifact(ok, "dir"))).toEqual({ objects: ["dir/a.txt"], error: "" });
      const otherKey = `endpoint: 127.0.0.1:${attackerPort}\ninsecure: true\nbucket: loot\naccessKeySecret: {name: minio-keys, key: accessKey}\nsecretKeySecret: {name: minio-keys, key: ca}\n`;
      expect((await perKey.client.listObjects(artifact(otherKey, "dir"))).error).toContain(
        'secret "minio-keys" (key "ca") may not be read',
      );
    } finally {
      expect(await perKey.stop()).toBe(0);
    }
  });

  it("an allowed secret works as before", async () => {
    const cfg = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n${keysFrom("minio-keys")}`;
    expect(await plugin.client.listObjects(artifact(cfg, "dir"))).toEqual({ objects: ["dir/a.txt"], error: "" });
  });
});

describe("shared by default where a plugin cannot be a workflow's (issue #23, case 5)", () => {
  const handMade = () => {
    // A sidecar added to argo-server by hand: in a pod (API, service account), without the workflow's name and uid.
    const env = { ...kube.env };
    delete env["ARGO_WORKFLOW_NAME"];
    delete env["ARGO_WORKFLOW_UID"];
    return env;
  };

  it("a pod without Argo's workflow environment and no ARGO_S3_PLUGIN_SHARED is the shared sidecar: no secret a workflow names is read", async () => {
    const p = await startPlugin({ ...handMade(), ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: loopbackStores() });
    try {
      expect(readyLine(p)).toMatchObject({
        shared: true,
        sharedBecause: expect.stringContaining("without a workflow's environment"),
      });
      const before = kube.requests.length;
      const cfg = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n${keysFrom("argo-server-admin")}`;
      const { error } = await p.client.listObjects(artifact(cfg, "dir"));
      expect(error).toContain(
        'secret "argo-server-admin" (key "accessKey") may not be read by this plugin: it is the shared argo-server sidecar',
      );
      expect(kube.requests.slice(before)).toEqual([]);
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });

  it("a workflow's pod (its name and uid present) and an explicit ARGO_S3_PLUGIN_SHARED=false read the workflow's secrets as before; outside Kubernetes nothing changes", async () => {
    const cfg = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n${keysFrom("minio-keys")}`;
    for (const env of [kube.env, { ...handMade(), ARGO_S3_PLUGIN_SHARED: "false" }]) {
      const p = await startPlugin(env);
      try {
        expect(readyLine(p).shared).toBe(false);
        expect(await p.client.listObjects(artifact(cfg, "dir"))).toEqual({ objects: ["dir/a.txt"], error: "" });
      } finally {
        expect(await p.stop()).toBe(0);
      }
    }
    const laptop = await startPlugin({});
    expect(readyLine(laptop)).toMatchObject({ shared: false, sharedBecause: "not in a Kubernetes pod" });
    expect(await laptop.stop()).toBe(0);
  });

  it("the shared sidecar reaches no loopback endpoint (argo-server's own ports) unless listed, in any spelling", async () => {
    const p = await startPlugin({
      ...kube.env,
      ARGO_S3_PLUGIN_SHARED: "true",
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "y",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    try {
      for (const ep of [
        `127.0.0.1:${attackerPort}`,
        `localhost:${attackerPort}`,
        `[::1]:${attackerPort}`,
        `2130706433:${attackerPort}`,
        `127.1:${attackerPort}`,
        `0x7f.1:${attackerPort}`,
        `0.0.0.0:${attackerPort}`,
        `[::ffff:127.0.0.1]:${attackerPort}`,
        `LOCALHOST.:${attackerPort}`,
      ]) {
        tally({ suite: "hostile: loopback endpoints in the shared sidecar", hostileTried: 1 });
        const { error } = await p.client.listObjects(artifact(`endpoint: "${ep}"\ninsecure: true\nbucket: b\n`, "dir"));
        expect(error, ep).toContain("loopback");
        expect(error, ep).toContain("ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS");
        tally({ suite: "hostile: loopback endpoints in the shared sidecar", hostileRefused: 1 });
      }
      expect(seen).toEqual([]);
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });

  it("an S3 endpoint the operator set in the sidecar's environment (AWS_ENDPOINT_URL_S3) is theirs to choose, loopback included", async () => {
    const p = await startPlugin({
      ...kube.env,
      ARGO_S3_PLUGIN_SHARED: "true",
      AWS_ENDPOINT_URL_S3: `http://${minio.endpoint}`,
      AWS_ACCESS_KEY_ID: minio.accessKey,
      AWS_SECRET_ACCESS_KEY: minio.secretKey,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_REGION: "us-east-1",
    });
    try {
      expect(await p.client.listObjects(artifact("bucket: shared\n", "dir"))).toEqual({
        objects: ["dir/a.txt"],
        error: "",
      });
      // The same address written by an author is still refused.
      expect(
        (await p.client.listObjects(artifact(`endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n`, "dir")))
          .error,
      ).toContain("loopback");
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });

  it("the shared sidecar assumes no role a configuration names unless the operator lists it", async () => {
    const role = "arn:aws:iam::123456789012:role/argo-server-admin";
    const cfg = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\nroleARN: ${role}\n`;
    const env = {
      ...kube.env,
      ARGO_S3_PLUGIN_SHARED: "true",
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: loopbackStores(),
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "y",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_ENDPOINT_URL_STS: `http://127.0.0.1:${attackerPort}`,
    };
    const refusing = await startPlugin(env);
    try {
      const before = seen.length;
      const { error } = await refusing.client.listObjects(artifact(cfg, "dir"));
      expect(error).toContain(`roleARN "${role}" may not be assumed`);
      expect(error).toContain("ARGO_S3_PLUGIN_ALLOWED_ROLES");
      expect(seen.length, "no STS request").toBe(before);
    } finally {
      expect(await refusing.stop()).toBe(0);
    }
    const listing = await startPlugin({ ...env, ARGO_S3_PLUGIN_ALLOWED_ROLES: role });
    try {
      const { error } = await listing.client.listObjects(artifact(cfg, "dir"));
      expect(error).not.toContain("may not be assumed"); // listed: the plugin goes on to STS (here a stand-in that answers nonsense)
      expect(error).toMatch(/assuming role/);
    } finally {
      expect(await listing.stop()).toBe(0);
    }
  });
});

describe("endpoints", () => {
  let plugin: PluginProcess;
  beforeAll(async () => {
    plugin = await startPlugin({
      ...kube.env,
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "y",
      AWS_EC2_METADATA_DISABLED: "true",
    });
  });
  afterAll(async () => {
    expect(await plugin?.stop()).toBe(0);
  });

  it("refuses link-local and cloud metadata literals in every spelling, before connecting", async () => {
    for (const ep of [
      "169.254.169.254",
      "169.254.170.2:80",
      "169.254.170.23",
      "[fe80::1]:80",
      "[fd00:ec2::254]",
      "[fd00:ec2::23]:80",
      "[::ffff:169.254.169.254]:80",
      "[::ffff:a9fe:a9fe]",
      // Spellings the SDK's URL parser turns into 169.254.170.23 (and then connects without a lookup).
      "2852039191",
      "0251.0376.0252.027",
      "0xa9feaa17:80",
      "0xa9.0xfe.0xaa.0x17",
      "169.254.43543",
      "169.254.170.23.",
      "169.254.170.23.:80",
    ]) {
      const a = artifact(
        `endpoint: "${ep}"\ninsecure: true\nbucket: meta\n`,
        "latest/meta-data/iam/security-credentials/role",
      );
      tally({ suite: "hostile: metadata endpoints (SSRF)", hostileTried: 2 });
      const frames = (await plugin.client.openStream(a)).frames;
      expect(frames.at(-1)?.error ?? "", ep).toContain("link-local / cloud metadata address");
      expect((await plugin.client.isDirectory(a)).error, ep).toContain("link-local / cloud metadata address");
      tally({ suite: "hostile: metadata endpoints (SSRF)", hostileRefused: 2 });
    }
  });

  it("keeps to the operator's allow list when one is set", async () => {
    const listed = await startPlugin({
      ...kube.env,
      ...{
        AWS_ACCESS_KEY_ID: minio.accessKey,
        AWS_SECRET_ACCESS_KEY: minio.secretKey,
        AWS_EC2_METADATA_DISABLED: "true",
      },
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: minio.endpoint,
    });
    try {
      const ok = await listed.client.listObjects(
        artifact(`endpoint: ${minio.endpoint}\ninsecure: true\nbucket: shared\n`, "dir"),
      );
      expect(ok).toEqual({ objects: ["dir/a.txt"], error: "" });
      const before = seen.length;
      const refused = await listed.client.listObjects(
        artifact(`endpoint: 127.0.0.1:${attackerPort}\ninsecure: true\nbucket: shared\n`, "dir"),
      );
      expect(refused.error).toContain("ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS");
      expect(seen.length).toBe(before);
    } finally {
      expect(await listed.stop()).toBe(0);
    }
  });
});

const ns = netnsSupport();
if (!ns.ok) process.stdout.write(`trust-boundary: name-resolution SSRF case skipped: ${ns.reason}\n`);

describe.skipIf(!ns.ok)("a name that resolves to a metadata address", () => {
  it("is refused at connection time; the stand-in metadata service receives nothing", async () => {
    const net = NetNs.create();
    const base = tempBase("ssrf-");
    // `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts for what runs inside.
    const etc = join("/etc/netns", net.name);
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, "hosts"), "127.0.0.1 localhost\n169.254.170.23 metadata.internal.test\n");
    const meta = net.spawn(
      process.execPath,
      [
        "-e",
        `require("node:http").createServer((q, s) => { console.log("HIT " + q.url); s.end(JSON.stringify({AccessKeyId: "AKIAMETADATALEAK", SecretAccessKey: "s", Token: "t"})); }).listen(80, "169.254.170.23", () => console.log("listening"));`,
      ],
      { PATH: process.env["PATH"] ?? "" },
    );
    try {
      await meta.waitFor(/listening/, 10_000);
      const plugin = await startPluginInNetns(
        net,
        { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "y", AWS_EC2_METADATA_DISABLED: "true" },
        base,
      );
      try {
        const a = artifact(`endpoint: metadata.internal.test:80\ninsecure: true\nbucket: v1\n`, "credentials");
        tally({ suite: "hostile: metadata endpoints (SSRF)", hostileTried: 1 });
        const frames = (await plugin.client.openStream(a)).frames;
        const error = frames.at(-1)?.error ?? "";
        expect(error).toContain("resolves to 169.254.170.23");
        expect(Buffer.concat(frames.map((f) => f.data)).toString()).not.toContain("AKIAMETADATALEAK");
        expect(meta.output()).not.toContain("HIT");
        tally({ suite: "hostile: metadata endpoints (SSRF)", hostileRefused: 1 });
      } finally {
        expect(await plugin.stop()).toBe(0);
      }
    } finally {
      await meta.stop();
      await net.destroy();
      rmSync(etc, { recursive: true, force: true });
      removeTree(base);
    }
  }, 120_000);
});

describe("caSecret and the identity exchange", () => {
  it("the workflow's CA is trusted for its S3 endpoint only: the pod's web-identity token never reaches an STS whose certificate that CA signed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fake-sts-"));
    const { cert, key } = await selfSignedCert(join(dir, "tls"));
    const posted: string[] = [];
    const sts = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        posted.push(body);
        res.writeHead(500);
        res.end();
      });
    });
    await new Promise<void>((r) => sts.listen(0, "127.0.0.1", r));
    const port = (sts.address() as { port: number }).port;
    const token = "eyJhbGciOiJSUzI1NiJ9.pod-identity-token-never-posted.sig";
    writeFileSync(join(dir, "token"), token);
    kube.setSecret("author-ca", { "ca.crt": readFileSync(cert) });
    const plugin = await startPlugin({
      ...kube.env,
      AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/pod-role",
      AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, "token"),
      AWS_ENDPOINT_URL_STS: `https://127.0.0.1:${port}`,
      AWS_EC2_METADATA_DISABLED: "true",
      ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS: "10",
    });
    try {
      const cfg = `endpoint: ${minio.endpoint}\nbucket: shared\nuseSDKCreds: true\ncaSecret: {name: author-ca, key: ca.crt}\n`;
      const res = await plugin.client.listObjects(artifact(cfg, "dir"));
      expect(res.error).toContain("could not obtain credentials");
      expect(posted.join("\n")).not.toContain("pod-identity-token-never-posted");
      expect(posted).toEqual([]);
      tally({
        suite: "hostile: workflow CA used for STS",
        hostileTried: 1,
        hostileRefused: 1,
        secretsSought: 1,
        secretsFound: 0,
      });
    } finally {
      expect(await plugin.stop()).toBe(0);
      sts.closeAllConnections();
      sts.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
