// Test helper (not part of the public API): a BlobClient that keeps what a step uploads, reading
// every body to its end as the HTTP client does, and serves stored test timings.
import type { Readable } from 'node:stream';
import type { TestCase } from '../junit.js';
import type { BlobClient } from './context.js';

export interface RecordingBlobClient extends BlobClient {
  artifacts: Map<string, Buffer>;
  testResults: TestCase[][];
  timings: { source: 'branch' | 'default-branch' | 'none'; tests: TestCase[] };
}

export function recordingBlobClient(): RecordingBlobClient {
  const unused = (what: string) => () => Promise.reject(new Error(`${what} is not used by these tests`));
  const client: RecordingBlobClient = {
    artifacts: new Map(),
    testResults: [],
    timings: { source: 'none', tests: [] },
    async putArtifact(path: string, body: Readable) {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c as Buffer));
      const data = Buffer.concat(chunks);
      client.artifacts.set(path, data);
      return { path, size: data.length };
    },
    putTestResults(tests: TestCase[]) {
      client.testResults.push(tests);
      return Promise.resolve({ count: tests.length });
    },
    testTimings() {
      return Promise.resolve(client.timings);
    },
    lookupCache: unused('lookupCache'),
    getCache: unused('getCache'),
    stageCache: unused('stageCache'),
    putCache: unused('putCache'),
    putWorkspaceLayer: unused('putWorkspaceLayer'),
    workspaceLayers: unused('workspaceLayers'),
    getWorkspaceLayer: unused('getWorkspaceLayer'),
  };
  return client;
}
