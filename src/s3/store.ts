// The only place S3 commands are built: one store per bucket, over the
// target's two clients (retrying, and single-attempt for OpenStream and
// CreateMultipartUpload, whose retries are decided above). Methods send one
// request each and return the SDK's answer; callers name the failure with
// storageError (errors.ts), where operation, bucket, key, endpoint, code and
// whether another attempt may help are put into words.
import {
  AbortMultipartUploadCommand,
  type AbortMultipartUploadCommandOutput,
  CompleteMultipartUploadCommand,
  type CompleteMultipartUploadCommandInput,
  type CompleteMultipartUploadCommandOutput,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type CreateMultipartUploadCommandOutput,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  type GetObjectCommandInput,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandInput,
  type HeadObjectCommandOutput,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  type ListPartsCommandInput,
  type ListPartsCommandOutput,
  PutBucketEncryptionCommand,
  type PutBucketEncryptionCommandInput,
  PutObjectCommand,
  type PutObjectCommandInput,
  type PutObjectCommandOutput,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandInput,
  type UploadPartCommandOutput,
} from "@aws-sdk/client-s3";

/** Everything of a command's input but what the store fills in. */
type Rest<T> = Omit<T, "Bucket" | "Key">;

export interface SendOptions {
  signal?: AbortSignal | undefined;
  /** One attempt only: the caller decides about repeating (OpenStream must not retry). */
  single?: boolean;
}

export class ObjectStore {
  constructor(
    readonly bucket: string,
    private readonly retrying: S3Client,
    private readonly singleAttempt: S3Client,
  ) {}

  private client(o: SendOptions): S3Client {
    return o.single ? this.singleAttempt : this.retrying;
  }

  private opts(o: SendOptions): { abortSignal?: AbortSignal } {
    return o.signal ? { abortSignal: o.signal } : {};
  }

  head(key: string, input: Rest<HeadObjectCommandInput>, o: SendOptions): Promise<HeadObjectCommandOutput> {
    return this.client(o).send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  get(key: string, input: Rest<GetObjectCommandInput>, o: SendOptions): Promise<GetObjectCommandOutput> {
    return this.client(o).send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  put(key: string, input: Rest<PutObjectCommandInput>, o: SendOptions): Promise<PutObjectCommandOutput> {
    return this.client(o).send(new PutObjectCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  async deleteObject(key: string, o: SendOptions): Promise<void> {
    await this.client(o).send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), this.opts(o));
  }

  deleteObjects(keys: readonly string[], o: SendOptions): Promise<DeleteObjectsCommandOutput> {
    const Objects = keys.map((Key) => ({ Key }));
    return this.client(o).send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects, Quiet: true } }), this.opts(o));
  }

  listObjects(prefix: string, token: string | undefined, maxKeys: number | undefined, o: SendOptions): Promise<ListObjectsV2CommandOutput> {
    return this.client(o).send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: maxKeys }), this.opts(o));
  }

  createMultipartUpload(key: string, input: Rest<CreateMultipartUploadCommandInput>, o: SendOptions): Promise<CreateMultipartUploadCommandOutput> {
    return this.client(o).send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  uploadPart(key: string, input: Rest<UploadPartCommandInput>, o: SendOptions): Promise<UploadPartCommandOutput> {
    return this.client(o).send(new UploadPartCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  completeMultipartUpload(key: string, input: Rest<CompleteMultipartUploadCommandInput>, o: SendOptions): Promise<CompleteMultipartUploadCommandOutput> {
    return this.client(o).send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  abortMultipartUpload(key: string, uploadId: string, o: SendOptions): Promise<AbortMultipartUploadCommandOutput> {
    return this.client(o).send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), this.opts(o));
  }

  listMultipartUploads(prefix: string, o: SendOptions): Promise<ListMultipartUploadsCommandOutput> {
    return this.client(o).send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix }), this.opts(o));
  }

  listParts(key: string, input: Rest<ListPartsCommandInput>, o: SendOptions): Promise<ListPartsCommandOutput> {
    return this.client(o).send(new ListPartsCommand({ Bucket: this.bucket, Key: key, ...input }), this.opts(o));
  }

  async headBucket(o: SendOptions): Promise<void> {
    await this.client(o).send(new HeadBucketCommand({ Bucket: this.bucket }), this.opts(o));
  }

  async createBucket(objectLocking: boolean, o: SendOptions): Promise<void> {
    await this.client(o).send(new CreateBucketCommand({ Bucket: this.bucket, ObjectLockEnabledForBucket: objectLocking || undefined }), this.opts(o));
  }

  async putBucketEncryption(config: PutBucketEncryptionCommandInput["ServerSideEncryptionConfiguration"], o: SendOptions): Promise<void> {
    await this.client(o).send(new PutBucketEncryptionCommand({ Bucket: this.bucket, ServerSideEncryptionConfiguration: config }), this.opts(o));
  }
}
