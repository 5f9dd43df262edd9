// Credential selection in Argo's order of precedence:
//   1. keys from Kubernetes secrets (accessKeySecret + secretKeySecret [+ sessionTokenSecret])
//   2. roleARN: STS AssumeRole, source credentials from the SDK's default chain
//   3. useSDKCreds, or nothing set: the SDK's default Node chain (env, IRSA web
//      identity, container credentials incl. EKS Pod Identity, instance metadata)
// The SDK's chain is used as is: unlike Argo ≤ v3.5.11's Go client it accepts
// the EKS Pod Identity agent at 169.254.170.23 / [fd00:ec2::23].
import { fromNodeProviderChain, fromTemporaryCredentials } from "@aws-sdk/credential-providers";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@aws-sdk/types";
import type { PluginConfig } from "../config/types.js";
import { PluginError, describeError } from "../errors.js";
import type { SecretSource } from "./kube-secrets.js";

export type CredentialSource = "kubernetes-secrets" | "assume-role" | "sdk-default-chain";

export interface CredentialChoice {
  source: CredentialSource;
  provider: AwsCredentialIdentityProvider;
}

/** How long static keys read from secrets are trusted before the secret is read again. */
const SECRET_KEYS_TTL_MS = 60_000;

export function chooseCredentials(cfg: PluginConfig, secrets: SecretSource, region: string): CredentialChoice {
  const { accessKeySecret, secretKeySecret, sessionTokenSecret } = cfg;
  if (accessKeySecret && secretKeySecret) {
    const provider: AwsCredentialIdentityProvider = async (): Promise<AwsCredentialIdentity> => {
      const [ak, sk, st] = await Promise.all([
        secrets.get(accessKeySecret),
        secrets.get(secretKeySecret),
        sessionTokenSecret ? secrets.get(sessionTokenSecret) : Promise.resolve(undefined),
      ]);
      const accessKeyId = ak?.toString("utf8").trim() ?? "";
      const secretAccessKey = sk?.toString("utf8").trim() ?? "";
      if (!accessKeyId || !secretAccessKey) {
        throw new PluginError(
          "credentials",
          `empty access key or secret key in Kubernetes secrets "${accessKeySecret.name}"/"${secretKeySecret.name}"`,
        );
      }
      const sessionToken = st?.toString("utf8").trim() || undefined;
      // An expiration makes the SDK ask again after the TTL, so rotated secrets are picked up.
      return { accessKeyId, secretAccessKey, sessionToken, expiration: new Date(Date.now() + SECRET_KEYS_TTL_MS) };
    };
    return { source: "kubernetes-secrets", provider };
  }
  if (cfg.roleARN) {
    const provider = fromTemporaryCredentials({
      params: { RoleArn: cfg.roleARN, RoleSessionName: `argo-s3-artifact-plugin-${process.pid}` },
      // The STS endpoint follows the SDK's own settings (AWS_ENDPOINT_URL_STS, AWS_STS_REGIONAL_ENDPOINTS).
      clientConfig: { region },
      masterCredentials: fromNodeProviderChain(),
    });
    return { source: "assume-role", provider: wrapProviderErrors(provider, `assuming role ${cfg.roleARN}`) };
  }
  return { source: "sdk-default-chain", provider: wrapProviderErrors(fromNodeProviderChain(), "the AWS SDK default credential chain") };
}

/**
 * Keep the SDK's own explanation but say which path was being tried; bound the
 * wait; and when the SDK's container-credentials path (EKS Pod Identity, ECS)
 * failed, say which endpoint and why.
 *
 * Why the last two: (1) in the SDK's default chain a failed fetch from
 * AWS_CONTAINER_CREDENTIALS_FULL_URI (agent answered 4xx/5xx, token file
 * missing, ...) falls through to the legacy container provider, whose error
 * replaces the real one with "169.254.170.23 is not a valid container metadata
 * service hostname" (or, for a refused plain-HTTP host, "Could not load
 * credentials from any providers"): it names neither the endpoint nor the
 * cause, and reads like the very bug this plugin exists to avoid. So on such a
 * failure the endpoint is asked once more, directly with the SDK's own
 * fromHttp (no retries, short timeout; one diagnosis at a time), and its error
 * is reported instead. (2) The SDK's per-request timeout for that endpoint only
 * logs a warning in the @smithy/node-http-handler in use, so an agent that
 * accepts the connection and never answers would hang the RPC forever; the
 * whole fetch is therefore bounded (ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS,
 * default 30). Nothing secret is reported: the token is only ever a header, the
 * URL is shown without user info or query.
 */
function wrapProviderErrors(p: AwsCredentialIdentityProvider, what: string): AwsCredentialIdentityProvider {
  const env = process.env;
  const timeoutSeconds = Number(env["ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS"] || 30);
  const timeoutMs = Number.isFinite(timeoutSeconds) && timeoutSeconds > 0 ? timeoutSeconds * 1000 : 30_000;
  const flat = (s: string) => s.replace(/\s+/g, " ").trim();
  /** The container endpoint the SDK would use, when it is the chain's operative source. */
  const containerEndpoint = (): string | undefined => {
    if (env["AWS_ACCESS_KEY_ID"] && env["AWS_SECRET_ACCESS_KEY"]) return undefined; // env keys come first
    if (env["AWS_WEB_IDENTITY_TOKEN_FILE"] && env["AWS_ROLE_ARN"]) return undefined; // IRSA comes first
    const rel = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"];
    const full = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    const raw = rel ? `http://169.254.170.2${rel}` : full;
    if (!raw) return undefined;
    try {
      const u = new URL(raw);
      return `${u.protocol}//${u.host}${u.pathname}`;
    } catch {
      return raw.replace(/\/\/[^/@]*@/, "//").replace(/[?#].*$/, "");
    }
  };
  const endpointText = (url: string) =>
    `container credentials endpoint ${url} (${env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" : "AWS_CONTAINER_CREDENTIALS_FULL_URI"})`;
  /** Why a direct fetch from the endpoint fails now, or undefined if it works. */
  const diagnose = async (): Promise<string | undefined> => {
    const { fromHttp } = await import("@aws-sdk/credential-providers");
    const tokenFile = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"];
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        fromHttp({ maxRetries: 0, timeout: 2000 })(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer within 5 s")), 5000);
        }),
      ]);
      return undefined;
    } catch (e) {
      const x = e as { code?: string; Code?: string; Message?: string };
      let msg = flat(describeError(e));
      // fromHttp wraps network errors in its own error type; a bare system error comes from reading the token file.
      if (tokenFile && x.code && /^E[A-Z]+$/.test(x.code) && !(e instanceof Error && e.name === "CredentialsProviderError")) {
        msg = `cannot read the token file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile}: ${msg}`;
      } else if (tokenFile && /Invalid character in header content \["Authorization"\]/i.test(msg)) {
        msg = `the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile} is not a valid header value (a trailing newline?)`;
      } else if (/^URL not accepted/.test(msg)) {
        msg = `the AWS SDK refuses this plain-HTTP host (${msg.replace(/^URL not accepted\. /, "")})`;
      } else if (/^Server responded with status/.test(msg)) {
        const detail = [x.Code, x.Message].filter((v) => typeof v === "string" && v).join(": ").slice(0, 300);
        msg = `the endpoint answered HTTP ${msg.replace(/\D+/g, "")}${detail ? ` (${detail})` : ""}`;
      }
      return msg;
    } finally {
      clearTimeout(timer);
    }
  };
  let diagnosis: Promise<string | undefined> | undefined;
  return async (opts) => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Error("timeout");
    try {
      return await Promise.race([
        p(opts),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(timedOut), timeoutMs);
        }),
      ]);
    } catch (e) {
      if (e instanceof PluginError) throw e;
      const fail = (detail: string) => new PluginError("credentials", `could not obtain credentials from ${what}: ${detail}`, { cause: e });
      const container = containerEndpoint();
      const irsa = env["AWS_WEB_IDENTITY_TOKEN_FILE"] && env["AWS_ROLE_ARN"] && !(env["AWS_ACCESS_KEY_ID"] && env["AWS_SECRET_ACCESS_KEY"]);
      // Where the chain gets its credentials from, as far as the environment tells.
      const source = container
        ? ` (credentials source: ${endpointText(container)})`
        : irsa
          ? ` (credentials source: web identity, AWS_ROLE_ARN=${env["AWS_ROLE_ARN"]}, AWS_WEB_IDENTITY_TOKEN_FILE=${env["AWS_WEB_IDENTITY_TOKEN_FILE"]})`
          : "";
      if (e === timedOut) throw fail(`no answer within ${timeoutMs / 1000} s${source}`);
      // A service error (e.g. STS refusing AssumeRole) is the real cause already.
      const isServiceError = typeof e === "object" && e !== null && "$metadata" in e;
      if (container && !isServiceError) {
        diagnosis ??= diagnose().finally(() => (diagnosis = undefined));
        const cause = await diagnosis.catch(() => undefined);
        if (cause) throw fail(`${endpointText(container)}: ${cause}`);
      }
      let detail = flat(describeError(e));
      // A service's error code (e.g. STS "AccessDenied") says more than its message alone.
      const named = e as { Code?: string; name?: string };
      const code = isServiceError ? (named.Code ?? named.name) : undefined;
      if (code && code !== "Error" && !detail.startsWith(code)) detail = `${code}: ${detail}`;
      throw fail(`${detail}${source}`);
    } finally {
      clearTimeout(timer);
    }
  };
}
