// Secret masking in step output: every value of 4 characters or more, whole, however the bytes are
// cut into reads and however long the step pauses between them, on stdout and stderr alike.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MASK, MaskingStream, maskableSecrets, maskSecrets } from './output.js';
import { runTask } from './index.js';
import { MemorySink, runStep, taskSpec } from './testing.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function collect(secrets: string[]) {
  const chunks: string[] = [];
  const stream = new MaskingStream(maskableSecrets(secrets), (t) => chunks.push(t));
  return { stream, chunks, text: () => chunks.join('') };
}

describe('maskableSecrets', () => {
  it('keeps values of 4 characters or more, longest first, once each', () => {
    expect(maskableSecrets(['abc', 'abcd', 'abcdefgh', 'abcd', ''])).toEqual(['abcdefgh', 'abcd']);
  });

  it('adds each line of a multi-line value, since output is masked line by line', () => {
    const key = '-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\r\nxy\n-----END KEY-----';
    expect(maskableSecrets([key])).toEqual([
      key,
      'AAAAB3NzaC1yc2EAAAADAQAB',
      '-----BEGIN KEY-----',
      '-----END KEY-----',
    ]);
  });
});

describe('MaskingStream', () => {
  it('masks every occurrence, the longer of two overlapping secrets whole, and leaves short values', () => {
    const { stream, text } = collect(['abc', 'pass1234', 'pass1234-extended']);
    stream.write('abc pass1234 and pass1234-extended twice pass1234\n');
    stream.end();
    expect(text()).toBe(`abc ${MASK} and ${MASK} twice ${MASK}\n`);
  });

  it('masks a secret cut across two reads of the same line', () => {
    const { stream, text } = collect(['hunter2-secret']);
    stream.write(Buffer.from('token=hunt'));
    stream.write(Buffer.from('er2-secret!\n'));
    stream.end();
    expect(text()).toBe(`token=${MASK}!\n`);
  });

  it('masks a secret cut inside a multi-byte character', () => {
    const { stream, text } = collect(['clé-secrète']);
    const bytes = Buffer.from('>clé-secrète<\n');
    stream.write(bytes.subarray(0, 4)); // ends inside 'é'
    stream.write(bytes.subarray(4));
    stream.end();
    expect(text()).toBe(`>${MASK}<\n`);
  });

  it('masks a secret whose halves are printed with a pause longer than the partial-line wait', async () => {
    const { stream, chunks, text } = collect(['supersecret']);
    stream.write('progress: sup');
    await sleep(80);
    // the partial line went out without the end that may begin the secret
    expect(chunks).toEqual(['progress: ']);
    stream.write('ersecret done\n');
    stream.end();
    expect(text()).toBe(`progress: ${MASK} done\n`);
  });

  it('still passes on a partial line that cannot begin a secret (progress output is not held)', async () => {
    const { stream, chunks } = collect(['supersecret']);
    stream.write('downloading 50%');
    await sleep(80);
    expect(chunks).toEqual(['downloading 50%']);
    stream.end();
  });

  it('sends a held-back end at the end of the stream, when it turned out not to be a secret', async () => {
    const { stream, text } = collect(['supersecret']);
    stream.write('the word super');
    await sleep(80);
    stream.end();
    expect(text()).toBe('the word super');
  });

  it('masks a secret cut at the long-partial-line limit', () => {
    const { stream, text } = collect(['0123456789secret']);
    stream.write('x'.repeat(8190) + '0123456');
    stream.write('789secret\n');
    stream.end();
    expect(text()).toBe('x'.repeat(8190) + `${MASK}\n`);
  });

  it('masks each line of a multi-line secret printed in pieces', () => {
    const key = 'line-one-of-key\nline-two-of-key';
    const { stream, text } = collect([key]);
    stream.write('line-one-of-key\nline-tw');
    stream.write('o-of-key\n');
    stream.end();
    expect(text()).toBe(`${MASK}\n${MASK}\n`);
  });

  it('matches maskSecrets on a whole text, whatever the cut (property)', () => {
    const secrets = maskableSecrets(['s3cr3t-value', 'ab12', 'xyz']);
    const text = 'a s3cr3t-value b ab12ab12 c xyz s3cr3t-valu\nab1 s3cr3t-value\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const out: string[] = [];
      const stream = new MaskingStream(secrets, (t) => out.push(t));
      stream.write(text.slice(0, cut));
      stream.write(text.slice(cut));
      stream.end();
      expect(out.join('')).toBe(maskSecrets(text, secrets));
    }
  });
});

describe('masking in a running step', () => {
  let workRoot: string;
  beforeAll(() => {
    workRoot = mkdtempSync(path.join(tmpdir(), 'torus-mask-test-'));
  });
  afterAll(() => rmSync(workRoot, { recursive: true, force: true }));

  it('masks stdout and stderr, also a value printed in two writes with a pause between', async () => {
    const sink = new MemorySink();
    const spec = taskSpec(
      [
        runStep(
          'echo "out: $API_KEY"; printf "err: %s" "${API_KEY%????????????}" >&2; sleep 0.3; printf "%s\\n" "${API_KEY#????????}" >&2; echo "pin: $PIN"',
        ),
      ],
      {
        environment: { API_KEY: 'ak_live_9f8e7d6c5b4a', PIN: '123' },
        secrets: ['ak_live_9f8e7d6c5b4a', '123'],
      },
    );
    const result = await runTask(spec, sink, {
      workRoot,
      sandbox: 'none',
      signal: new AbortController().signal,
    });
    expect(result.status).toBe('success');
    expect(sink.step(2).out).toBe(`out: ${MASK}\npin: 123\n`);
    expect(sink.step(2).err).toBe(`err: ${MASK}\n`);
  });
});
