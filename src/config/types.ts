// The plugin configuration: Argo's S3Bucket schema plus one extra key, `tuning`,
// for what only this plugin has. Field names follow Argo's YAML exactly so a
// built-in `s3:` block can be pasted into `plugin.configuration` unchanged.

/** A Kubernetes SecretKeySelector, resolved in the pod's namespace. */
export interface SecretRef {
  name: string;
  key: string;
  optional: boolean;
}

export type AddressingStyle = "auto" | "path" | "virtual-hosted";

export interface EncryptionOptions {
  enableEncryption: boolean;
  kmsKeyId: string;
  /** JSON object as a string, exactly as Argo takes it. */
  kmsEncryptionContext: string;
  serverSideCustomerKeySecret: SecretRef | undefined;
}

export interface Tuning {
  /** Size of one multipart part and one download range, in bytes. */
  partSize: number;
  /** Parts (or ranges) of one object in flight at once. */
  partConcurrency: number;
  /** Files of a directory artifact in flight at once. */
  fileConcurrency: number;
  /** Objects at or below this size move in one request. */
  multipartThreshold: number;
  /** Attempts per S3 request for retried operations (1 = no retry). */
  maxAttempts: number;
  /** Abort a single S3 request that has not completed in this time. */
  requestTimeoutMs: number;
  /**
   * "crc32": every upload carries a full-object CRC32 that S3 verifies, and
   * every download is checked against it. "none": for stores that reject
   * checksum headers (payloads are then protected by SigV4 hashing instead).
   */
  checksum: "crc32" | "none";
}

export interface PluginConfig {
  endpoint: string;
  bucket: string;
  region: string;
  insecure: boolean;
  accessKeySecret: SecretRef | undefined;
  secretKeySecret: SecretRef | undefined;
  sessionTokenSecret: SecretRef | undefined;
  roleARN: string;
  useSDKCreds: boolean;
  createBucketIfNotPresent: { objectLocking: boolean } | undefined;
  encryptionOptions: EncryptionOptions | undefined;
  caSecret: SecretRef | undefined;
  addressingStyle: AddressingStyle;
  tuning: Tuning;
}

const MiB = 1024 * 1024;

export const DEFAULT_TUNING: Readonly<Tuning> = Object.freeze({
  partSize: 16 * MiB,
  partConcurrency: 8,
  fileConcurrency: 64,
  multipartThreshold: 16 * MiB,
  maxAttempts: 5,
  requestTimeoutMs: 5 * 60_000,
  checksum: "crc32",
});
