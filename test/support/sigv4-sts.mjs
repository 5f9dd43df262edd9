// @ts-check
// Just enough AWS Signature Version 4 and STS for the identity tests, written
// against the public SigV4 specification with node:crypto only:
//   - signRequest / verifySignature for form-encoded POSTs (service "sts");
//   - assumeRole: MinIO's STS AssumeRole with its root keys, returning real
//     temporary credentials (the Pod Identity agent stand-in and the STS
//     stand-in hand these out);
//   - stsXml: the XML an STS endpoint answers, so the SDK's own STS client
//     parses what the stand-in returns.
// Plain JavaScript so it also runs as part of a child process inside a network
// namespace (node, no TypeScript loader).
import { createHash, createHmac } from "node:crypto";
import { request as httpRequest } from "node:http";

/** @param {string | Buffer} data */
const sha256 = (data) => createHash("sha256").update(data).digest("hex");
/** @param {string | Buffer} key @param {string} data */
const hmac = (key, data) => createHmac("sha256", key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it. @param {string} s */
export function uriEncode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** @param {Record<string, string>} params */
export function formBody(params) {
  return Object.entries(params)
    .map(([k, v]) => `${uriEncode(k)}=${uriEncode(v)}`)
    .join("&");
}

/** @param {Date} d */
function amzDate(d) {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

/**
 * The signature of a request, given the headers that are signed.
 * @param {{ method: string, path: string, query?: string, headers: Record<string, string>, signedHeaders: string[], body: string,
 *   secretKey: string, date: string, region: string, service: string }} r
 */
function signature(r) {
  const canonicalHeaders = r.signedHeaders
    .map((h) => `${h}:${(r.headers[h] ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const canonicalRequest = [
    r.method,
    r.path,
    r.query ?? "",
    canonicalHeaders,
    r.signedHeaders.join(";"),
    sha256(r.body),
  ].join("\n");
  const day = r.date.slice(0, 8);
  const scope = `${day}/${r.region}/${r.service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", r.date, scope, sha256(canonicalRequest)].join("\n");
  let k = hmac(`AWS4${r.secretKey}`, day);
  k = hmac(k, r.region);
  k = hmac(k, r.service);
  k = hmac(k, "aws4_request");
  return createHmac("sha256", k).update(toSign).digest("hex");
}

/**
 * Headers for a signed form POST to `url`.
 * @param {{ url: string, body: string, accessKey: string, secretKey: string, sessionToken?: string, region?: string, service?: string, now?: Date }} o
 * @returns {Record<string, string>}
 */
export function signRequest(o) {
  const u = new URL(o.url);
  const region = o.region ?? "us-east-1";
  const service = o.service ?? "sts";
  const date = amzDate(o.now ?? new Date());
  /** @type {Record<string, string>} */
  const headers = {
    "content-type": "application/x-www-form-urlencoded",
    host: u.host,
    "x-amz-content-sha256": sha256(o.body),
    "x-amz-date": date,
  };
  if (o.sessionToken) headers["x-amz-security-token"] = o.sessionToken;
  const signedHeaders = Object.keys(headers).sort();
  const sig = signature({
    method: "POST",
    path: u.pathname || "/",
    headers,
    signedHeaders,
    body: o.body,
    secretKey: o.secretKey,
    date,
    region,
    service,
  });
  headers["authorization"] =
    `AWS4-HMAC-SHA256 Credential=${o.accessKey}/${date.slice(0, 8)}/${region}/${service}/aws4_request, ` +
    `SignedHeaders=${signedHeaders.join(";")}, Signature=${sig}`;
  return headers;
}

/**
 * Parses a SigV4 Authorization header.
 * @param {string | undefined} auth
 * @returns {{ accessKey: string, day: string, region: string, service: string, signedHeaders: string[], signature: string } | undefined}
 */
export function parseAuthorization(auth) {
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth ?? "",
    );
  if (!m) return undefined;
  return {
    accessKey: m[1] ?? "",
    day: m[2] ?? "",
    region: m[3] ?? "",
    service: m[4] ?? "",
    signedHeaders: (m[5] ?? "").split(";"),
    signature: m[6] ?? "",
  };
}

/**
 * Checks a received request's SigV4 signature with the caller's secret key.
 * @param {{ method: string, url: string, headers: Record<string, string | string[] | undefined>, body: string, secretKey: string }} r
 * @returns {boolean}
 */
export function verifySignature(r) {
  const auth = parseAuthorization(
    typeof r.headers["authorization"] === "string" ? r.headers["authorization"] : undefined,
  );
  const date = r.headers["x-amz-date"];
  if (!auth || typeof date !== "string") return false;
  /** @type {Record<string, string>} */
  const headers = {};
  for (const h of auth.signedHeaders) {
    const v = r.headers[h];
    headers[h] = Array.isArray(v) ? v.join(",") : (v ?? "");
  }
  const u = new URL(r.url, "http://placeholder");
  const query = [...u.searchParams.entries()]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a], [b]) => ((a ?? "") < (b ?? "") ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const expected = signature({
    method: r.method,
    path: u.pathname,
    query,
    headers,
    signedHeaders: auth.signedHeaders,
    body: r.body,
    secretKey: r.secretKey,
    date,
    region: auth.region,
    service: auth.service,
  });
  return expected === auth.signature;
}

/** @param {string} xml @param {string} tag */
export function xmlValue(xml, tag) {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? m[1] : undefined;
}

/** @param {string} s */
const xmlEscape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * @typedef {{ accessKeyId: string, secretAccessKey: string, sessionToken: string, expiration: string }} TempCredentials
 */

/** An IAM policy allowing s3:* on one bucket and its objects only. @param {string} bucket */
export function bucketPolicy(bucket) {
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      { Effect: "Allow", Action: ["s3:*"], Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`] },
    ],
  });
}

/**
 * POST a signed STS form to `url`; resolves with status and body text.
 * @param {string} url @param {string} body @param {Record<string, string>} headers
 * @returns {Promise<{ status: number, text: string }>}
 */
function post(url, body, headers) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) }, timeout: 10_000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`STS request to ${url} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * MinIO's STS AssumeRole with long-lived keys: real temporary credentials
 * limited by `policy`.
 * @param {{ url: string, accessKey: string, secretKey: string, policy?: string, durationSeconds?: number }} o
 * @returns {Promise<TempCredentials>}
 */
export async function assumeRole(o) {
  /** @type {Record<string, string>} */
  const params = { Action: "AssumeRole", Version: "2011-06-15", DurationSeconds: String(o.durationSeconds ?? 900) };
  if (o.policy) params["Policy"] = o.policy;
  const body = formBody(params);
  const { status, text } = await post(
    o.url,
    body,
    signRequest({ url: o.url, body, accessKey: o.accessKey, secretKey: o.secretKey }),
  );
  if (status !== 200)
    throw new Error(
      `MinIO AssumeRole answered HTTP ${status}: ${xmlValue(text, "Code") ?? ""} ${xmlValue(text, "Message") ?? ""}`,
    );
  const accessKeyId = xmlValue(text, "AccessKeyId");
  const secretAccessKey = xmlValue(text, "SecretAccessKey");
  const sessionToken = xmlValue(text, "SessionToken");
  const expiration = xmlValue(text, "Expiration");
  if (!accessKeyId || !secretAccessKey || !sessionToken || !expiration)
    throw new Error("MinIO AssumeRole answer lacks credentials");
  return { accessKeyId, secretAccessKey, sessionToken, expiration };
}

/**
 * The XML an STS endpoint answers for AssumeRole / AssumeRoleWithWebIdentity.
 * @param {"AssumeRole" | "AssumeRoleWithWebIdentity"} action @param {TempCredentials} c @param {{ roleArn: string, sessionName: string }} who
 */
export function stsXml(action, c, who) {
  const roleId = `AROAEXAMPLE:${who.sessionName}`;
  const extra =
    action === "AssumeRoleWithWebIdentity"
      ? "<SubjectFromWebIdentityToken>system:serviceaccount:argo:default</SubjectFromWebIdentityToken>"
      : "";
  return (
    `<${action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><${action}Result>${extra}` +
    `<AssumedRoleUser><Arn>${xmlEscape(who.roleArn.replace(":role/", ":assumed-role/"))}/${xmlEscape(who.sessionName)}</Arn><AssumedRoleId>${xmlEscape(roleId)}</AssumedRoleId></AssumedRoleUser>` +
    `<Credentials><AccessKeyId>${xmlEscape(c.accessKeyId)}</AccessKeyId><SecretAccessKey>${xmlEscape(c.secretAccessKey)}</SecretAccessKey>` +
    `<SessionToken>${xmlEscape(c.sessionToken)}</SessionToken><Expiration>${xmlEscape(c.expiration)}</Expiration></Credentials>` +
    `</${action}Result><ResponseMetadata><RequestId>stand-in-${Date.now()}</RequestId></ResponseMetadata></${action}Response>`
  );
}

/** An STS error document. @param {string} code @param {string} message */
export function stsErrorXml(code, message) {
  return `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>stand-in</RequestId></ErrorResponse>`;
}
