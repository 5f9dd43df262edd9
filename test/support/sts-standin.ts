// Identity stand-ins for the AWS identity-path tests, on loopback:
//
// - startStsStandin: an STS endpoint for AssumeRole chained on other temporary
//   credentials (MinIO refuses AssumeRole from temporary credentials, see the
//   contract §7). It checks the caller's request for real: SigV4 signature over
//   service "sts" verified with the caller's secret key, the session token the
//   caller was issued, a known RoleArn and a RoleSessionName. It then answers
//   STS's XML with credentials it got from MinIO's own AssumeRole (root keys,
//   a session policy for the role's bucket only), so the SDK's STS client
//   parses a genuine answer and the credentials work against MinIO.
// - startOidcIssuer: an OpenID Connect discovery document and JWKS, and RS256
//   JWTs signed with its key, for MinIO's AssumeRoleWithWebIdentity (IRSA).
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { assumeRole, bucketPolicy, parseAuthorization, stsErrorXml, stsXml, verifySignature } from "./sigv4-sts.mjs";

export interface CallerCredential {
  secretAccessKey: string;
  sessionToken: string;
}

export interface StsRequest {
  action: string;
  roleArn: string;
  roleSessionName: string;
  callerAccessKey: string;
  status: number;
  code?: string;
}

export interface StsStandin {
  url: string;
  requests: StsRequest[];
  stop(): Promise<void>;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (body += c));
    req.on("end", () => resolve(body));
    req.on("error", reject);
  });
}

/**
 * @param roles       role ARN → the one bucket its credentials may use
 * @param lookupCaller the caller's secret key and session token by access key id (what the Pod Identity agent issued)
 */
export async function startStsStandin(opts: {
  minio: { url: string; accessKey: string; secretKey: string };
  roles: Record<string, string>;
  lookupCaller: (accessKeyId: string) => Promise<CallerCredential | undefined>;
}): Promise<StsStandin> {
  const requests: StsRequest[] = [];
  const answer = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const form = new URLSearchParams(body);
    const rec: StsRequest = {
      action: form.get("Action") ?? "",
      roleArn: form.get("RoleArn") ?? "",
      roleSessionName: form.get("RoleSessionName") ?? "",
      callerAccessKey: "",
      status: 200,
    };
    requests.push(rec);
    const fail = (status: number, code: string, message: string) => {
      rec.status = status;
      rec.code = code;
      res.writeHead(status, { "content-type": "text/xml" });
      res.end(stsErrorXml(code, message));
    };
    if (req.method !== "POST" || rec.action !== "AssumeRole")
      return fail(400, "InvalidAction", `unsupported: ${req.method} ${rec.action}`);
    const auth = parseAuthorization(req.headers.authorization);
    if (!auth || auth.service !== "sts")
      return fail(403, "MissingAuthenticationToken", "request is not SigV4-signed for sts");
    rec.callerAccessKey = auth.accessKey;
    const caller = await opts.lookupCaller(auth.accessKey);
    if (!caller) return fail(403, "InvalidClientTokenId", "The security token included in the request is invalid.");
    if (req.headers["x-amz-security-token"] !== caller.sessionToken)
      return fail(403, "InvalidClientTokenId", "session token missing or not the one issued");
    const signed = verifySignature({
      method: req.method,
      url: req.url ?? "/",
      headers: req.headers,
      body,
      secretKey: caller.secretAccessKey,
    });
    if (!signed)
      return fail(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
      );
    const bucket = opts.roles[rec.roleArn];
    if (!bucket)
      return fail(403, "AccessDenied", `not authorized to perform: sts:AssumeRole on resource: ${rec.roleArn}`);
    if (!rec.roleSessionName) return fail(400, "ValidationError", "RoleSessionName is required");
    try {
      const duration = Math.max(900, Number(form.get("DurationSeconds") ?? 900) || 900);
      const c = await assumeRole({ ...opts.minio, policy: bucketPolicy(bucket), durationSeconds: duration });
      res.writeHead(200, { "content-type": "text/xml" });
      res.end(stsXml("AssumeRole", c, { roleArn: rec.roleArn, sessionName: rec.roleSessionName }));
    } catch (e) {
      fail(500, "InternalFailure", (e as Error).message);
    }
  };
  const server = createServer((req, res) => void answer(req, res));
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, requests, stop: () => close(server) };
}

export interface OidcIssuer {
  /** MINIO_IDENTITY_OPENID_CONFIG_URL */
  configUrl: string;
  issuer: string;
  /** A signed RS256 JWT with these claims (plus iss, iat, exp defaults). */
  token(claims: Record<string, unknown>, opts?: { foreignKey?: boolean }): string;
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

export async function startOidcIssuer(): Promise<OidcIssuer> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const foreign = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = publicKey.export({ format: "jwk" });
  const kid = createHash("sha256").update(JSON.stringify(jwk)).digest("hex").slice(0, 16);
  let base = "";
  const server = createServer((req, res) => {
    const json = (body: object) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.url === "/.well-known/openid-configuration") {
      return json({
        issuer: base,
        jwks_uri: `${base}/jwks`,
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
      });
    }
    if (req.url === "/jwks") return json({ keys: [{ ...jwk, kid, alg: "RS256", use: "sig" }] });
    res.writeHead(404).end();
  });
  const port = await listen(server);
  base = `http://127.0.0.1:${port}`;
  return {
    configUrl: `${base}/.well-known/openid-configuration`,
    issuer: base,
    token(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
      const payload = b64url(
        JSON.stringify({ iss: base, iat: now, exp: now + 3600, jti: randomBytes(8).toString("hex"), ...claims }),
      );
      const sig = sign(
        "sha256",
        Buffer.from(`${header}.${payload}`),
        opts.foreignKey ? foreign.privateKey : privateKey,
      );
      return `${header}.${payload}.${b64url(sig)}`;
    },
    stop: () => close(server),
  };
}

/** The role ARN MinIO derives for an OpenID provider with a role policy: base64url(SHA-1(client id)). */
export function minioOpenIdRoleArn(clientId: string, region = ""): string {
  return `arn:minio:iam:${region}::role/${createHash("sha1").update(clientId).digest("base64url")}`;
}
