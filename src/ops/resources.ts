// The resources object every subsystem is built from: database, object store, clock, ids, logger
// and settings, passed in (never imported as globals) so tests can control each.
import { randomUUID } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { Database, ObjectStore } from '../storage/index.js';
import type { Settings } from './settings.js';

export interface Clock {
  now(): Date;
}

export interface Ids {
  uuid(): string;
}

export interface Resources {
  db: Database;
  store: ObjectStore;
  clock: Clock;
  ids: Ids;
  logger: Logger;
  settings: Settings;
}

export const systemClock: Clock = { now: () => new Date() };
export const randomIds: Ids = { uuid: () => randomUUID() };

export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { service: 'torus' } });
}

export type { Logger };
