// A change counter per database, in this process: every committed registry change bumps it, and
// resolver caches built on the same database drop what they cached before. Other replicas' changes
// reach a cache only when its entries expire (resolver.ts keeps the expiry short where it matters).
import type { Database } from '../storage/index.js';

const generations = new WeakMap<Database, number>();

export function registryGeneration(db: Database): number {
  return generations.get(db) ?? 0;
}

export function noteRegistryChanged(db: Database): void {
  generations.set(db, registryGeneration(db) + 1);
}
