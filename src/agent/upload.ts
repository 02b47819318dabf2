// Uploads of output frames through node:http(s), writing the frames' parts as they are: fetch takes
// one body and copies it (twice, through a web stream), and a loud step sends a gigabyte.
import http from 'node:http';
import https from 'node:https';

/** connections kept for uploads, one per protocol (the agent sends one request at a time) */
const keepAlive = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 4 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 4 }),
};

/** answers longer than this are cut (an error message is all that is read) */
const ANSWER_MAX_BYTES = 64 * 1024;

/**
 * POSTs `parts` one after another as the body (a single writev), and answers as fetch would:
 * a Response with the status and the (short) answer text. Rejects on network errors and on `signal`.
 */
export function postParts(
  url: string,
  headers: Record<string, string>,
  parts: readonly Buffer[],
  signal: AbortSignal,
): Promise<Response> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  const agent = target.protocol === 'https:' ? keepAlive['https:'] : keepAlive['http:'];
  let length = 0;
  for (const p of parts) length += p.length;
  return new Promise<Response>((resolve, reject) => {
    const req = client.request(
      target,
      { method: 'POST', agent, signal, headers: { ...headers, 'content-length': String(length) } },
      (res) => {
        const answer: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size >= ANSWER_MAX_BYTES) return;
          answer.push(chunk);
          size += chunk.length;
        });
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const empty = status === 204 || status === 205 || status === 304;
          const text = Buffer.concat(answer).toString('utf8');
          try {
            resolve(new Response(empty ? null : text, { status }));
          } catch (err) {
            // a status a Response cannot carry (1xx, or beyond 599)
            reject(new Error(`the server answered HTTP ${status}: ${(err as Error).message}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.cork();
    for (const p of parts) req.write(p);
    req.uncork();
    req.end();
  });
}
