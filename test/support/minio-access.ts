// What most integration tests need of a running MinIO: an admin S3 client to
// set up and inspect buckets directly, and the environment that gives the
// plugin MinIO's root keys through the SDK's default chain.
import { createHash } from "node:crypto";
import { GetObjectCommand, ListMultipartUploadsCommand, type MultipartUpload, S3Client } from "@aws-sdk/client-s3";
import type { MinioServer } from "../../scripts/lib/minio.mjs";

export function adminClient(minio: MinioServer): S3Client {
  return new S3Client({
    endpoint: minio.url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
  });
}

export function rootKeysEnv(minio: MinioServer): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: minio.secretKey,
    AWS_EC2_METADATA_DISABLED: "true",
  };
}

/**
 * Multipart uploads still in the bucket once in-flight aborts have had up to 5 s
 * to land (empty is the answer every cleanup check wants). With `prefix`, the
 * listing under it is read beside the whole bucket's.
 */
export async function uploadsLeft(s3: S3Client, bucket: string, prefix?: string): Promise<MultipartUpload[]> {
  let uploads: MultipartUpload[] = [];
  for (let i = 0; i < 50; i++) {
    const lists = await Promise.all([
      s3.send(new ListMultipartUploadsCommand({ Bucket: bucket })),
      ...(prefix === undefined ? [] : [s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }))]),
    ]);
    uploads = lists.flatMap((l) => l.Uploads ?? []);
    if (uploads.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return uploads;
}

/** SHA-256 (hex) of the object's bytes, or undefined when there is no such object. */
export async function objectSha(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return createHash("sha256")
      .update(await out.Body!.transformToByteArray())
      .digest("hex");
  } catch (e) {
    if ((e as { name?: string }).name === "NoSuchKey") return undefined;
    throw e;
  }
}
