// The orb registry's categories, a fixed list as on CircleCI's registry (`circleci orb
// list-categories`); orbs are filed under them with `circleci orb add-to-category`. Ids are fixed
// so they survive backups and are the same on every replica.
import { isUuid } from '../accounts/index.js';

export interface OrbCategory {
  id: string;
  name: string;
}

export const ORB_CATEGORIES: readonly OrbCategory[] = [
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000001', name: 'Artifacts/Registry' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000002', name: 'Build' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000003', name: 'Cloud Platform' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000004', name: 'Code Analysis' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000005', name: 'Collaboration' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000006', name: 'Containers' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000007', name: 'Deployment' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000008', name: 'Infra Automation' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-000000000009', name: 'Kubernetes' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000a', name: 'Language/Framework' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000b', name: 'Monitoring' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000c', name: 'Notifications' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000d', name: 'Reporting' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000e', name: 'Security' },
  { id: '6d3c3b54-0b8f-4a47-9d0e-00000000000f', name: 'Testing' },
];

const byId = new Map(ORB_CATEGORIES.map((c) => [c.id, c]));
const byName = new Map(ORB_CATEGORIES.map((c) => [c.name.toLowerCase(), c]));

/** By id, or by name (case-insensitive). */
export function findCategory(ref: string): OrbCategory | null {
  return (isUuid(ref) ? byId.get(ref.toLowerCase()) : byName.get(ref.toLowerCase())) ?? null;
}

/** Category ids as stored, in name order; ids no longer in the list are left out. */
export function categoriesOf(ids: readonly string[]): OrbCategory[] {
  return ids
    .map((id) => byId.get(id))
    .filter((c): c is OrbCategory => c !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
}
