// Test helper: an s3rver (a local S3 imitation) on a free loopback port with one bucket, and
// S3ObjectStores that talk to it path-style or virtual-hosted. For tests only.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { S3ObjectStore } from './s3.js';

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  /** what S3RVER accepts */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** a store addressing the bucket path-style (http://127.0.0.1:port/bucket/key) */
  pathStyleStore(prefix?: string): S3ObjectStore;
  /** a store addressing it virtual-hosted (http://bucket.s3.torus.test:port/key, resolved to loopback) */
  virtualHostedStore(prefix?: string): S3ObjectStore;
  close(): Promise<void>;
}

/** the service endpoint s3rver recognises virtual-hosted bucket names under */
const VHOST_DOMAIN = 'torus.test';

export async function startTestS3Server(bucket = 'torus-test'): Promise<TestS3Server> {
  const dir = mkdtempSync(join(tmpdir(), 'torus-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    directory: dir,
    silent: true,
    serviceEndpoint: VHOST_DOMAIN,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const stores: S3ObjectStore[] = [];
  const track = (s: S3ObjectStore) => {
    stores.push(s);
    return s;
  };
  // Every *.torus.test name resolves to loopback, so the SDK's bucket-in-hostname requests reach s3rver.
  const loopbackAgent = new Agent({
    keepAlive: true,
    lookup: (_host, opts, cb) => {
      if ((opts as { all?: boolean }).all) {
        (cb as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [
          { address: '127.0.0.1', family: 4 },
        ]);
      } else cb(null, '127.0.0.1', 4);
    },
  });
  return {
    endpoint,
    bucket,
    credentials,
    pathStyleStore: (prefix) =>
      track(
        new S3ObjectStore({
          bucket,
          prefix,
          endpoint,
          forcePathStyle: true,
          credentials,
          region: 'us-east-1',
        }),
      ),
    virtualHostedStore: (prefix) =>
      track(
        new S3ObjectStore({
          bucket,
          prefix,
          client: new S3Client({
            endpoint: `http://s3.${VHOST_DOMAIN}:${port}`,
            forcePathStyle: false,
            region: 'us-east-1',
            credentials,
            requestHandler: { httpAgent: loopbackAgent },
          }),
        }),
      ),
    async close() {
      for (const s of stores) s.close();
      loopbackAgent.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
