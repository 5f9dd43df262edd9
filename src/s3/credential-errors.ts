// Why a credential fetch through the SDK's chain failed, in words a person can
// act on. Two SDK behaviours make this necessary (seen with the versions in the
// lockfile, proven by test/pod-identity.test.ts):
//   1. When the container-credentials fetch (EKS Pod Identity, ECS) fails — the
//      agent answered 4xx/5xx, the token file is missing — the default chain
//      falls through to the legacy container provider, whose error replaces the
//      real one with "169.254.170.23 is not a valid container metadata service
//      hostname" (or, for a refused plain-HTTP host, "Could not load credentials
//      from any providers"): it names neither the endpoint nor the cause, and
//      reads like the very bug this plugin exists to avoid. So the endpoint is
//      asked once more, directly with the SDK's own fromHttp (no retries, short
//      timeout, one diagnosis at a time), and that error is reported instead.
//   2. The SDK's per-request timeout for that endpoint only logs a warning, so
//      an agent that accepts the connection and never answers would hang the
//      RPC forever; the whole fetch is therefore bounded
//      (ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS, default 30).
// Nothing secret is reported: the token is only ever a header, and URLs are
// shown without user info or query.
import { fromHttp } from "@aws-sdk/credential-providers";
import { describeError } from "../errors.js";

export function credentialsTimeoutMs(env: NodeJS.ProcessEnv): number {
  const seconds = Number(env["ARGO_S3_PLUGIN_CREDENTIALS_TIMEOUT_SECONDS"] || 30);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 30_000;
}

const flat = (s: string) => s.replace(/\s+/g, " ").trim();

/** The container endpoint the SDK would use, when it is the chain's operative source. */
export function containerEndpoint(env: NodeJS.ProcessEnv): string | undefined {
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
}

function endpointText(env: NodeJS.ProcessEnv, url: string): string {
  const variable = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
    : "AWS_CONTAINER_CREDENTIALS_FULL_URI";
  return `container credentials endpoint ${url} (${variable})`;
}

/** Why a direct fetch from the container endpoint fails now, or undefined if it works. */
async function diagnoseContainer(env: NodeJS.ProcessEnv): Promise<string | undefined> {
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
    const msg = flat(describeError(e));
    // fromHttp wraps network errors in its own error type; a bare system error comes from reading the token file.
    if (
      tokenFile &&
      x.code &&
      /^E[A-Z]+$/.test(x.code) &&
      !(e instanceof Error && e.name === "CredentialsProviderError")
    ) {
      return `cannot read the token file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile}: ${msg}`;
    }
    if (tokenFile && /Invalid character in header content \["Authorization"\]/i.test(msg)) {
      return `the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=${tokenFile} is not a valid header value (a trailing newline?)`;
    }
    if (/^URL not accepted/.test(msg))
      return `the AWS SDK refuses this plain-HTTP host (${msg.replace(/^URL not accepted\. /, "")})`;
    if (/^Server responded with status/.test(msg)) {
      const detail = [x.Code, x.Message]
        .filter((v) => typeof v === "string" && v)
        .join(": ")
        .slice(0, 300);
      return `the endpoint answered HTTP ${msg.replace(/\D+/g, "")}${detail ? ` (${detail})` : ""}`;
    }
    return msg;
  } finally {
    clearTimeout(timer);
  }
}

let diagnosis: Promise<string | undefined> | undefined;

/** The failure of a credential fetch as one readable line (without the "could not obtain…" lead). */
export async function explainCredentialFailure(
  e: unknown,
  timedOut: boolean,
  timeoutMs: number,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const container = containerEndpoint(env);
  const irsa =
    env["AWS_WEB_IDENTITY_TOKEN_FILE"] &&
    env["AWS_ROLE_ARN"] &&
    !(env["AWS_ACCESS_KEY_ID"] && env["AWS_SECRET_ACCESS_KEY"]);
  // Where the chain gets its credentials from, as far as the environment tells.
  const source = container
    ? ` (credentials source: ${endpointText(env, container)})`
    : irsa
      ? ` (credentials source: web identity, AWS_ROLE_ARN=${env["AWS_ROLE_ARN"]}, AWS_WEB_IDENTITY_TOKEN_FILE=${env["AWS_WEB_IDENTITY_TOKEN_FILE"]})`
      : "";
  if (timedOut) return `no answer within ${timeoutMs / 1000} s${source}`;
  // A service error (e.g. STS refusing AssumeRole) is the real cause already.
  const isServiceError = typeof e === "object" && e !== null && "$metadata" in e;
  if (container && !isServiceError) {
    diagnosis ??= diagnoseContainer(env).finally(() => (diagnosis = undefined));
    const cause = await diagnosis.catch(() => undefined);
    if (cause) return `${endpointText(env, container)}: ${cause}`;
  }
  let detail = flat(describeError(e));
  // A service's error code (e.g. STS "AccessDenied") says more than its message alone.
  const named = e as { Code?: string; name?: string };
  const code = isServiceError ? (named.Code ?? named.name) : undefined;
  if (code && code !== "Error" && !detail.startsWith(code)) detail = `${code}: ${detail}`;
  return `${detail}${source}`;
}
