// Server-side encryption parameters, with the built-in driver's semantics so
// objects written by Argo's own S3 driver stay readable and vice versa:
//   enableEncryption + serverSideCustomerKeySecret → SSE-C, the 256-bit key
//     derived per object with PBKDF2-SHA256(secret, bucket+key, 32768 rounds)
//     exactly as minio-go's DefaultPBKDF does;
//   enableEncryption + kmsKeyId → SSE-KMS (optional JSON encryption context);
//   enableEncryption alone → SSE-S3.
import { pbkdf2 } from "node:crypto";
import { promisify } from "node:util";
import type { SecretRef } from "../config/types.js";
import type { PluginConfig } from "../config/types.js";
import { PluginError } from "../errors.js";
import { Lru } from "../util/lru.js";
import type { SecretSource } from "./kube-secrets.js";

const pbkdf2Async = promisify(pbkdf2);

/** Headers every read (GET/HEAD) of an object must carry. */
export interface ReadSse {
  SSECustomerAlgorithm?: string;
  SSECustomerKey?: string;
}

/** Headers a write (PUT / CreateMultipartUpload / UploadPart) must carry. */
export interface WriteSse extends ReadSse {
  ServerSideEncryption?: "AES256" | "aws:kms";
  SSEKMSKeyId?: string;
  SSEKMSEncryptionContext?: string;
}

export type SseMode = "none" | "sse-s3" | "sse-kms" | "sse-c";

export function sseMode(cfg: PluginConfig): SseMode {
  const e = cfg.encryptionOptions;
  if (!e || !e.enableEncryption) return "none";
  if (e.serverSideCustomerKeySecret) return "sse-c";
  if (e.kmsKeyId) return "sse-kms";
  return "sse-s3";
}

export class Encryption {
  readonly mode: SseMode;
  private readonly customerKeyRef: SecretRef | undefined;
  /** SSE-C keys of the objects in use (a directory's files in flight at most). */
  private readonly derived = new Lru<string, { password: Buffer; sse: Promise<ReadSse> }>(128);

  constructor(
    private readonly cfg: PluginConfig,
    private readonly secrets: SecretSource,
  ) {
    this.mode = sseMode(cfg);
    this.customerKeyRef = cfg.encryptionOptions?.serverSideCustomerKeySecret;
  }

  /** SSE-C headers for reading `key`; empty for every other mode (S3 decrypts SSE-S3/KMS itself). */
  async forRead(key: string): Promise<ReadSse> {
    if (this.mode !== "sse-c") return {};
    return this.customerKey(key);
  }

  async forWrite(key: string): Promise<WriteSse> {
    const e = this.cfg.encryptionOptions;
    switch (this.mode) {
      case "none":
        return {};
      case "sse-s3":
        return { ServerSideEncryption: "AES256" };
      case "sse-kms": {
        const out: WriteSse = { ServerSideEncryption: "aws:kms", SSEKMSKeyId: e!.kmsKeyId };
        if (e!.kmsEncryptionContext) {
          out.SSEKMSEncryptionContext = Buffer.from(JSON.stringify(JSON.parse(e!.kmsEncryptionContext))).toString(
            "base64",
          );
        }
        return out;
      }
      case "sse-c":
        return this.customerKey(key);
    }
  }

  /**
   * The SSE-C key of `key`. Every request of an object carries it (each range,
   * each part), so the derivation (32,768 PBKDF2 rounds) is kept for the
   * objects in use, with the secret it came from: a rotated secret derives anew.
   */
  private async customerKey(key: string): Promise<ReadSse> {
    const ref = this.customerKeyRef!;
    const password = await this.secrets.get(ref);
    if (!password || password.length === 0) {
      throw new PluginError(
        "credentials",
        `encryptionOptions.serverSideCustomerKeySecret: Kubernetes secret "${ref.name}" key "${ref.key}" is empty`,
      );
    }
    const kept = this.derived.get(key);
    if (kept && kept.password.equals(password)) return kept.sse;
    const sse = pbkdf2Async(password, Buffer.from(this.cfg.bucket + key, "utf8"), 32768, 32, "sha256").then(
      // A base64 string of exactly 32 bytes is taken by the SDK as the raw key.
      (derived): ReadSse => ({ SSECustomerAlgorithm: "AES256", SSECustomerKey: derived.toString("base64") }),
    );
    this.derived.set(key, { password, sse });
    sse.catch(() => this.derived.delete(key));
    return sse;
  }

  /**
   * Whether a write answer confirms the encryption asked for. AWS echoes it in
   * PutObject, CreateMultipartUpload, UploadPart and CompleteMultipartUpload;
   * a store that ignores the headers stores plaintext and says nothing. Returns
   * what is missing, or undefined when confirmed (or nothing was asked).
   */
  unconfirmed(answer: {
    ServerSideEncryption?: string | undefined;
    SSECustomerAlgorithm?: string | undefined;
  }): string | undefined {
    switch (this.mode) {
      case "none":
        return undefined;
      case "sse-s3":
        return answer.ServerSideEncryption === "AES256" || answer.ServerSideEncryption === "aws:kms"
          ? undefined
          : `the store did not confirm SSE-S3 (its answer has no x-amz-server-side-encryption: AES256)`;
      case "sse-kms":
        return answer.ServerSideEncryption?.startsWith("aws:kms")
          ? undefined
          : `the store did not confirm SSE-KMS (its answer has no x-amz-server-side-encryption: aws:kms)`;
      case "sse-c":
        return answer.SSECustomerAlgorithm === "AES256"
          ? undefined
          : `the store did not confirm SSE-C (its answer has no x-amz-server-side-encryption-customer-algorithm: AES256)`;
    }
  }
}
