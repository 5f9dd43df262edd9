// The store port's contract (test/support/store-contract.ts) against MinIO,
// through both S3 implementations: SdkStore (every request through the AWS
// SDK) and LeanStore (GetObject and small PutObjects through the plugin's own
// HTTP client, the rest as SdkStore). The memory store passes the same suite in
// the unit tier.
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect } from "vitest";
import { parseConfig } from "../../src/config/parse.js";
import { type S3Target, S3TargetFactory } from "../../src/s3/targets.js";
import { Encryption } from "../../src/s3/encryption.js";
import { LeanStore, SdkStore } from "../../src/s3/store.js";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { storeContract } from "../support/store-contract.js";

const BUCKET = "contract";
let minio: MinioServer;
let target: S3Target;
let sdk: SdkStore;

beforeAll(async () => {
  minio = await startMinio();
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: BUCKET }));
  const text = `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\n`;
  const noSecrets = { get: () => Promise.resolve(undefined) };
  // The SDK's default chain reads the keys from this process's environment (this file's own worker).
  Object.assign(process.env, rootKeysEnv(minio));
  target = await new S3TargetFactory(noSecrets, { env: process.env }).get(parseConfig(text), text);
  // This configuration has a lean route: the factory's store is the lean one.
  expect(target.store).toBeInstanceOf(LeanStore);
  const [retrying, singleAttempt] = target.clients;
  sdk = new SdkStore({
    bucket: BUCKET,
    endpoint: target.endpointLabel,
    retrying: retrying!,
    singleAttempt: singleAttempt!,
    encryption: new Encryption(target.cfg, noSecrets),
  });
}, 120_000);

afterAll(async () => {
  await minio?.stop();
});

storeContract("SdkStore on MinIO", () => sdk);
storeContract("LeanStore on MinIO", () => target.store);
