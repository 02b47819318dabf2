import { describe, expect, it } from 'vitest';
import { compileConfig } from './index.js';
import { CronError, nextCronTime, parseCron } from './cron.js';

const at = (iso: string) => new Date(iso);
function next(expr: string, after: string): string | undefined {
  return nextCronTime(parseCron(expr), at(after))?.toISOString();
}

describe('cron expressions of scheduled workflows', () => {
  it('finds the next time strictly after the given one, in UTC', () => {
    expect(next('0 0 * * *', '2026-11-28T23:59:30Z')).toBe('2026-11-29T00:00:00.000Z');
    expect(next('0 0 * * *', '2026-11-29T00:00:00Z')).toBe('2026-11-30T00:00:00.000Z');
    expect(next('15 * * * *', '2026-11-28T10:15:00Z')).toBe('2026-11-28T11:15:00.000Z');
    expect(next('0 2,5,8,11 * * *', '2026-11-28T05:00:00Z')).toBe('2026-11-28T08:00:00.000Z');
    // 2026-11-28 is a Saturday: the next weekday noon is Monday
    expect(next('0 12 * * 1,2,3,4,5', '2026-11-28T00:00:00Z')).toBe('2026-11-30T12:00:00.000Z');
    expect(next('0 0 * * 0', '2026-11-28T00:00:00Z')).toBe('2026-11-29T00:00:00.000Z');
    expect(next('0 0 * * 7', '2026-11-28T00:00:00Z')).toBe('2026-11-29T00:00:00.000Z');
  });

  it("reads steps, ranges, names, and cron's either-day rule", () => {
    expect(next('*/20 * * * *', '2026-11-28T10:41:00Z')).toBe('2026-11-28T11:00:00.000Z');
    expect(next('10-30/10 9 * * *', '2026-11-28T09:10:00Z')).toBe('2026-11-28T09:20:00.000Z');
    expect(next('5/30 * * * *', '2026-11-28T09:06:00Z')).toBe('2026-11-28T09:35:00.000Z');
    expect(next('0 0 1 jan *', '2026-11-28T00:00:00Z')).toBe('2027-01-01T00:00:00.000Z');
    expect(next('0 0 * * MON-FRI', '2026-11-28T00:00:00Z')).toBe('2026-11-30T00:00:00.000Z');
    // both day fields restricted: the 1st of the month or a Sunday, whichever comes first
    expect(next('0 0 1 * SUN', '2026-11-28T00:00:00Z')).toBe('2026-11-29T00:00:00.000Z');
    expect(next('0 0 1 * SUN', '2026-11-29T00:00:00Z')).toBe('2026-12-01T00:00:00.000Z');
    // 29 February: the next leap year
    expect(next('0 0 29 2 *', '2026-11-28T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
    expect(nextCronTime(parseCron('0 0 30 2 *'), at('2026-01-01T00:00:00Z'))).toBeUndefined();
  });

  it.each([
    ['0 0 * *', 'has 4'],
    ['0 0 * * * *', 'has 6'],
    ['60 0 * * *', 'outside the minute field'],
    ['0 24 * * *', 'outside the hour field'],
    ['0 0 0 * *', 'outside the day of month field'],
    ['0 0 * 13 *', 'outside the month field'],
    ['0 0 * * 8', 'outside the day of week field'],
    ['*/0 * * * *', 'positive number'],
    ['5-1 * * * *', 'goes backwards'],
    ['x * * * *', 'not a number'],
    ['0 0 * * FUNDAY', 'not a number or a name'],
    ['1,,2 * * * *', 'empty list item'],
    ['@daily', 'write the five fields'],
  ])('refuses %j saying why', (expr, reason) => {
    expect(() => parseCron(expr)).toThrow(CronError);
    expect(() => parseCron(expr)).toThrow(reason);
  });

  it('is checked by the compiler, which points at the cron', async () => {
    const r = await compileConfig(
      [
        'version: 2.1',
        'jobs:',
        '  a: {docker: [{image: busybox}], steps: [{run: echo}]}',
        'workflows:',
        '  nightly:',
        '    triggers:',
        '      - schedule:',
        '          cron: "0 25 * * *"',
        '          filters: {branches: {only: main}}',
        '    jobs: [a]',
        '',
      ].join('\n'),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors[0]).toMatchObject({ code: 'TORUS_E_CONFIG_CRON', line: 8 });
    expect(r.errors[0]!.message).toContain('25 is outside the hour field');
  });
});
