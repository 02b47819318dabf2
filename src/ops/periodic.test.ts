import { describe, expect, it } from 'vitest';
import { Periodic } from './periodic.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Periodic', () => {
  it('runs at start, then an interval after each run ends, never two at once', async () => {
    const starts: number[] = [];
    let inRun = 0;
    let overlapped = false;
    const loop = new Periodic(
      async () => {
        starts.push(Date.now());
        if (++inRun > 1) overlapped = true;
        await sleep(30);
        inRun--;
      },
      () => 20,
    );
    loop.start();
    loop.start(); // a second start changes nothing
    await sleep(250);
    await loop.stop();
    expect(starts.length).toBeGreaterThanOrEqual(3);
    expect(overlapped).toBe(false);
    // each start comes at least run (30) + interval (20) after the one before
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(45);
  });

  it('goes on after a failed run', async () => {
    let runs = 0;
    const loop = new Periodic(
      async () => {
        runs++;
        throw new Error('boom');
      },
      () => 5,
    );
    loop.start();
    await sleep(100);
    await loop.stop();
    expect(runs).toBeGreaterThan(2);
  });

  it('stop aborts the run under way, waits for it, and no run follows', async () => {
    let runs = 0;
    let sawAbort = false;
    let ended = false;
    const loop = new Periodic(
      async (signal) => {
        runs++;
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
        sawAbort = signal.aborted;
        await sleep(20);
        ended = true;
      },
      () => 1,
    );
    loop.start();
    await sleep(20);
    expect(loop.started).toBe(true);
    await loop.stop();
    expect(ended && sawAbort).toBe(true);
    expect(loop.started).toBe(false);
    await sleep(30);
    expect(runs).toBe(1);
  });
});
