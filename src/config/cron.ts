// Cron expressions of legacy scheduled workflows (`triggers: - schedule: {cron: "…"}`): the five
// POSIX crontab fields (minute, hour, day of month, month, day of week), read in UTC, with lists,
// ranges, `*/n` and `a-b/n` steps, and month and weekday names (JAN…DEC, SUN…SAT; 0 and 7 are
// Sunday). As in cron, when both the day of month and the day of week are restricted a day
// matching either one counts.

export class CronError extends Error {}

interface Field {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const FIELDS: readonly Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  {
    name: 'month',
    min: 1,
    max: 12,
    names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'],
  },
  { name: 'day of week', min: 0, max: 7, names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] },
];

export interface CronSchedule {
  /** the expression as written */
  source: string;
  minutes: ReadonlySet<number>;
  hours: ReadonlySet<number>;
  daysOfMonth: ReadonlySet<number>;
  months: ReadonlySet<number>;
  /** 0 (Sunday) … 6 */
  daysOfWeek: ReadonlySet<number>;
  /** the day-of-month / day-of-week fields were not `*` */
  domRestricted: boolean;
  dowRestricted: boolean;
}

function value(text: string, field: Field): number {
  const upper = text.toUpperCase();
  const named = field.names?.indexOf(upper) ?? -1;
  if (named >= 0) return named + (field.name === 'month' ? 1 : 0);
  if (!/^\d+$/.test(text)) {
    const names = field.names ? ` or a name (${field.names[0]}…${field.names[field.names.length - 1]})` : '';
    throw new CronError(`${JSON.stringify(text)} in the ${field.name} field is not a number${names}`);
  }
  const n = Number(text);
  if (n < field.min || n > field.max) {
    throw new CronError(`${n} is outside the ${field.name} field's range ${field.min}-${field.max}`);
  }
  return n;
}

function parseField(text: string, field: Field): { values: Set<number>; restricted: boolean } {
  const values = new Set<number>();
  let restricted = true;
  for (const part of text.split(',')) {
    if (part === '')
      throw new CronError(`the ${field.name} field ${JSON.stringify(text)} has an empty list item`);
    const [range, stepText, extra] = part.split('/');
    if (extra !== undefined)
      throw new CronError(`${JSON.stringify(part)} in the ${field.name} field has two steps`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) {
        throw new CronError(
          `the step ${JSON.stringify(stepText)} in the ${field.name} field must be a positive number`,
        );
      }
      step = Number(stepText);
    }
    let lo: number;
    let hi: number;
    if (range === '*') {
      lo = field.min;
      hi = field.name === 'day of week' ? 6 : field.max;
      if (stepText === undefined && text === '*') restricted = false;
    } else if (range!.includes('-')) {
      const [a, b, more] = range!.split('-');
      if (more !== undefined || a === '' || b === '') {
        throw new CronError(`${JSON.stringify(range)} in the ${field.name} field is not a range like 1-5`);
      }
      lo = value(a!, field);
      hi = value(b!, field);
      if (lo > hi) throw new CronError(`the range ${range} in the ${field.name} field goes backwards`);
    } else {
      lo = value(range!, field);
      // `5/15`: from 5 to the end of the field, every 15
      hi = stepText === undefined ? lo : field.max;
    }
    for (let v = lo; v <= hi; v += step) values.add(field.name === 'day of week' ? v % 7 : v);
  }
  return { values, restricted };
}

/** Parses a five-field cron expression; throws CronError saying what is wrong. */
export function parseCron(expr: string): CronSchedule {
  const text = expr.trim();
  if (text.startsWith('@')) {
    throw new CronError(
      `${JSON.stringify(text)} is not supported: write the five fields, e.g. "0 0 * * *" for daily`,
    );
  }
  const parts = text.split(/\s+/).filter(Boolean);
  if (parts.length !== 5) {
    throw new CronError(
      `a cron expression has five fields (minute hour day-of-month month day-of-week); ${JSON.stringify(expr)} has ${parts.length}`,
    );
  }
  const [minute, hour, dom, month, dow] = parts.map((p, i) => parseField(p, FIELDS[i]!));
  return {
    source: text,
    minutes: minute!.values,
    hours: hour!.values,
    daysOfMonth: dom!.values,
    months: month!.values,
    daysOfWeek: dow!.values,
    domRestricted: dom!.restricted,
    dowRestricted: dow!.restricted,
  };
}

function dayMatches(s: CronSchedule, d: Date): boolean {
  if (!s.months.has(d.getUTCMonth() + 1)) return false;
  const dom = s.daysOfMonth.has(d.getUTCDate());
  const dow = s.daysOfWeek.has(d.getUTCDay());
  if (s.domRestricted && s.dowRestricted) return dom || dow;
  return dom && dow;
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/**
 * The first time strictly after `after` (to the minute, UTC) that the schedule fires, or undefined
 * when it never does (e.g. 30 February) within eight years (leap days included).
 */
export function nextCronTime(s: CronSchedule, after: Date): Date | undefined {
  const start = Math.floor(after.getTime() / MINUTE) * MINUTE + MINUTE;
  const hours = [...s.hours].sort((a, b) => a - b);
  const minutes = [...s.minutes].sort((a, b) => a - b);
  let day = Math.floor(start / DAY) * DAY;
  for (let i = 0; i < 366 * 8; i++, day += DAY) {
    if (!dayMatches(s, new Date(day))) continue;
    for (const h of hours) {
      for (const m of minutes) {
        const t = day + h * 60 * MINUTE + m * MINUTE;
        if (t >= start) return new Date(t);
      }
    }
  }
  return undefined;
}
