// The S3 implementation of ObjectStore (AWS SDK v3): any S3-compatible service, path-style or
// virtual-hosted addressing, keys under an optional prefix. Writes stream through a multipart upload
// (at most `queueSize` parts of `partSize` bytes in memory); S3 makes an object visible only when its
// upload completes, so readers never see a partial object, and a failed upload is aborted.
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { assertValidKey, type ObjectBody, type ObjectInfo, type ObjectStore } from './object-store.js';

export interface S3ObjectStoreOptions {
  bucket: string;
  /** keys are stored as `${prefix}/${key}`; '' for the bucket's root */
  prefix?: string;
  /** e.g. http://127.0.0.1:9000 for MinIO or s3rver; AWS's own endpoint when absent */
  endpoint?: string;
  /** AWS_REGION / the SDK's default chain when absent ('us-east-1' if that finds none either) */
  region?: string;
  /** true: http://endpoint/bucket/key; false: http://bucket.endpoint/key (virtual-hosted) */
  forcePathStyle?: boolean;
  /** static credentials; the SDK's default chain (env, profile, instance role…) when absent */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** bytes per multipart part (S3's minimum is 5 MiB) */
  partSize?: number;
  /** parts uploaded at once */
  queueSize?: number;
  /** a ready client (tests, custom middleware); the connection options above are then ignored */
  client?: S3Client;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

export class S3ObjectStore implements ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(opts: S3ObjectStoreOptions) {
    if (!opts.bucket) throw new Error('S3ObjectStore needs a bucket name');
    this.bucket = opts.bucket;
    const p = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = p ? `${p}/` : '';
    this.partSize = Math.max(MIN_PART_SIZE, opts.partSize ?? 8 * 1024 * 1024);
    this.queueSize = Math.max(1, opts.queueSize ?? 2);
    if (opts.client) {
      this.client = opts.client;
    } else {
      const config: S3ClientConfig = {
        forcePathStyle: opts.forcePathStyle ?? false,
        region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      };
      if (opts.endpoint) config.endpoint = opts.endpoint;
      if (opts.credentials) config.credentials = opts.credentials;
      this.client = new S3Client(config);
    }
  }

  private s3Key(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  async put(key: string, body: ObjectBody): Promise<{ size: number }> {
    const Key = this.s3Key(key);
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const buf = Buffer.from(body);
      await new Upload({ client: this.client, params: { Bucket: this.bucket, Key, Body: buf } }).done();
      return { size: buf.length };
    }
    // Count while streaming; an error of the source ends the generator, which aborts the upload.
    let size = 0;
    async function* counted(src: Readable): AsyncGenerator<Buffer> {
      for await (const chunk of src) {
        const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        size += b.length;
        yield b;
      }
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: Readable.from(counted(body)) },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    await upload.done();
    return { size };
  }

  async get(key: string): Promise<Readable | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }));
      if (!r.Body) return Readable.from([]);
      return r.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }));
      return { key, size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix + prefix,
          ContinuationToken: token,
        }),
      );
      for (const o of r.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
        };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  /** Drops the client's sockets. */
  close(): void {
    this.client.destroy();
  }
}
