// @ts-check
// The cluster's certificates and kubeconfigs.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { API_SERVICE_IP, NODE_IP, NODE_NAME, run } from "./common.mjs";

/**
 * The cluster's openssl-made PKI: a CA, the apiserver's serving cert, client
 * certs for each component, and the service-account key pair (all P-256).
 * @param {string} pki
 */
export async function makePki(pki) {
  mkdirSync(pki, { mode: 0o700 });
  const o = (/** @type {string[]} */ args) =>
    run("openssl", args, { cwd: pki, what: `openssl ${args[0]} (cluster PKI)` });
  const key = (/** @type {string} */ name) =>
    o(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
  await key("ca");
  await o([
    "req",
    "-x509",
    "-new",
    "-key",
    "ca.key",
    "-subj",
    "/CN=argo-s3-k8s-ca",
    "-days",
    "7",
    "-out",
    "ca.crt",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
  ]);
  await key("sa");
  await o(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
  /** @param {string} name @param {string} subj @param {"server" | "client"} usage @param {string} [san] */
  const leaf = async (name, subj, usage, san) => {
    await key(name);
    await o(["req", "-new", "-key", `${name}.key`, "-subj", subj, "-out", `${name}.csr`]);
    const ext = [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${usage}Auth`,
      ...(san ? [`subjectAltName=${san}`] : []),
    ];
    writeFileSync(join(pki, `${name}.ext`), `${ext.join("\n")}\n`);
    await o([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-set_serial",
      `0x${randomBytes(12).toString("hex")}`,
      "-days",
      "7",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    ]);
  };
  const sans = [
    "IP:" + NODE_IP,
    "IP:" + API_SERVICE_IP,
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ].join(",");
  await Promise.all([
    leaf("apiserver", "/CN=kube-apiserver", "server", sans),
    leaf("admin", "/O=system:masters/CN=argo-s3-admin", "client"),
    leaf("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "client"),
    leaf("controller-manager", "/CN=system:kube-controller-manager", "client"),
    leaf("scheduler", "/CN=system:kube-scheduler", "client"),
    leaf("kube-proxy", "/CN=system:kube-proxy", "client"),
    leaf("kubelet", `/O=system:nodes/CN=system:node:${NODE_NAME}`, "client"),
  ]);
  for (const f of readdirSync(pki)) if (/\.(csr|ext|srl)$/.test(f)) rmSync(join(pki, f));
}

/** A kubeconfig (JSON, which is YAML) with the CA and a client cert embedded. @param {string} pki @param {string} user @param {string} server */
export function kubeconfig(pki, user, server) {
  const b64 = (/** @type {string} */ f) => readFileSync(join(pki, f)).toString("base64");
  return JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: NODE_NAME, cluster: { server, "certificate-authority-data": b64("ca.crt") } }],
      users: [
        { name: user, user: { "client-certificate-data": b64(`${user}.crt`), "client-key-data": b64(`${user}.key`) } },
      ],
      contexts: [{ name: NODE_NAME, context: { cluster: NODE_NAME, user } }],
      "current-context": NODE_NAME,
    },
    null,
    2,
  );
}
