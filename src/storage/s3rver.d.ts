// Types for s3rver 3.7 (a dev dependency: the S3 object store's tests run against it).
declare module 's3rver' {
  export interface S3rverOptions {
    port?: number;
    address?: string;
    directory: string;
    silent?: boolean;
    serviceEndpoint?: string;
    vhostBuckets?: boolean;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }
  export default class S3rver {
    constructor(opts: S3rverOptions);
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
  }
}
