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
import { PluginError } from "../errors.js";
import { credentialsTimeoutMs, explainCredentialFailure } from "./credential-errors.js";
import type { SecretSource } from "./kube-secrets.js";

export type CredentialSource = "kubernetes-secrets" | "assume-role" | "sdk-default-chain";

export interface CredentialChoice {
  source: CredentialSource;
  provider: AwsCredentialIdentityProvider;
}

/** How long static keys read from secrets are trusted before the secret is read again. */
const SECRET_KEYS_TTL_MS = 60_000;

/** `env`: the process environment as main read it (the SDK's chain reads it too, for the same values). */
export function chooseCredentials(
  cfg: PluginConfig,
  secrets: SecretSource,
  region: string,
  env: NodeJS.ProcessEnv,
): CredentialChoice {
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
    return {
      source: "assume-role",
      provider: cached(wrapProviderErrors(provider, `assuming role ${cfg.roleARN}`, env)),
    };
  }
  return {
    source: "sdk-default-chain",
    provider: wrapProviderErrors(fromNodeProviderChain(), "the AWS SDK default credential chain", env),
  };
}

/** Refresh this long before credentials expire. */
const REFRESH_BEFORE_MS = 5 * 60_000;

/**
 * One assume-role provider per configuration serves both of its S3 clients:
 * credentials are kept until shortly before they expire and concurrent askers
 * share one fetch (without this, each client assumed the role on its own; the
 * SDK's default chain memoizes by itself).
 */
function cached(p: AwsCredentialIdentityProvider): AwsCredentialIdentityProvider {
  let current: AwsCredentialIdentity | undefined;
  let refreshAt = 0;
  let inflight: Promise<AwsCredentialIdentity> | undefined;
  return () => {
    if (current && Date.now() < refreshAt) return Promise.resolve(current);
    inflight ??= p().then(
      (c) => {
        current = c;
        const expires = c.expiration?.getTime();
        // The SDK's own convention: due five minutes before they expire.
        refreshAt = expires === undefined ? Infinity : expires - REFRESH_BEFORE_MS;
        inflight = undefined;
        return c;
      },
      (e: unknown) => {
        inflight = undefined;
        throw e;
      },
    );
    return inflight;
  };
}

/**
 * Say which path was being tried and why it failed; never wait forever (see credential-errors.ts).
 * The provider is called without the S3 client's config: the SDK would otherwise
 * send STS calls (web identity, assume role) through the S3 client's connection
 * handler, which trusts the workflow's caSecret. A workflow's CA is for its S3
 * endpoint only, never for the exchange that spends the pod's identity token.
 */
function wrapProviderErrors(
  p: AwsCredentialIdentityProvider,
  what: string,
  env: NodeJS.ProcessEnv,
): AwsCredentialIdentityProvider {
  const timeoutMs = credentialsTimeoutMs(env);
  return async () => {
    const opts = undefined;
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
      const detail = await explainCredentialFailure(e, e === timedOut, timeoutMs, env);
      throw new PluginError("credentials", `could not obtain credentials from ${what}: ${detail}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  };
}
