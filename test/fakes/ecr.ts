// A fake of Amazon ECR's API for one call, GetAuthorizationToken, speaking the AWS JSON 1.1
// protocol (POST /, X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken).
// It answers with a token for `registry` (base64 "user:password") when the SigV4 Authorization
// header names the expected access key id, and with UnrecognizedClientException otherwise.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeEcr {
  endpoint: string;
  /** the X-Amz-Target of every request, in order */
  calls: string[];
  close(): Promise<void>;
}

export async function startFakeEcr(opts: {
  accessKeyId: string;
  username: string;
  password: string;
  proxyEndpoint: string;
}): Promise<FakeEcr> {
  const calls: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      calls.push(target);
      const send = (status: number, body: unknown, errorType?: string) => {
        res.writeHead(status, {
          'content-type': 'application/x-amz-json-1.1',
          ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
        });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || target !== 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken') {
        send(
          400,
          { __type: 'UnknownOperationException', message: `unknown operation ${target}` },
          'UnknownOperationException',
        );
        return;
      }
      const auth = String(req.headers.authorization ?? '');
      if (!auth.includes(`Credential=${opts.accessKeyId}/`)) {
        send(
          400,
          {
            __type: 'UnrecognizedClientException',
            message: 'The security token included in the request is invalid.',
          },
          'UnrecognizedClientException',
        );
        return;
      }
      send(200, {
        authorizationData: [
          {
            authorizationToken: Buffer.from(`${opts.username}:${opts.password}`).toString('base64'),
            expiresAt: Math.floor(Date.now() / 1000) + 12 * 3600,
            proxyEndpoint: opts.proxyEndpoint,
          },
        ],
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
