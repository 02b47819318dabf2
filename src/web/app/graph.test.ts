import { describe, expect, it } from 'vitest';
import {
  COLUMN_GAP,
  GROUP_HEAD,
  GROUP_PAD,
  layoutGraph,
  matrixGroups,
  NODE_HEIGHT,
  NODE_WIDTH,
  ROW_GAP,
} from './graph';

describe('workflow graph layout', () => {
  it('puts each job one column right of the longest chain it requires', () => {
    const layout = layoutGraph([
      { id: 'lint', dependencies: [] },
      { id: 'test', dependencies: [] },
      { id: 'build', dependencies: ['lint', 'test'] },
      { id: 'hold', dependencies: ['build'] },
      { id: 'deploy', dependencies: ['hold', 'lint'] },
    ]);
    const col = (id: string) => layout.nodes.get(id)!.column;
    expect([col('lint'), col('test'), col('build'), col('hold'), col('deploy')]).toEqual([0, 0, 1, 2, 3]);
    expect(layout.edges).toHaveLength(5);
    expect(layout.width).toBe(4 * NODE_WIDTH + 3 * COLUMN_GAP);
    expect(layout.height).toBe(2 * NODE_HEIGHT + ROW_GAP);
    // every edge runs from a parent's right side to a child's left side
    for (const e of layout.edges) {
      const from = layout.nodes.get(e.from)!;
      const to = layout.nodes.get(e.to)!;
      expect(e.path.startsWith(`M${from.x + NODE_WIDTH} ${from.y + NODE_HEIGHT / 2} `)).toBe(true);
      expect(e.path.endsWith(` ${to.x} ${to.y + NODE_HEIGHT / 2}`)).toBe(true);
    }
  });

  it('orders a column by where its parents sit, so edges do not cross needlessly', () => {
    const layout = layoutGraph([
      { id: 'a', dependencies: [] },
      { id: 'b', dependencies: [] },
      { id: 'after-b', dependencies: ['b'] },
      { id: 'after-a', dependencies: ['a'] },
    ]);
    expect(layout.nodes.get('after-a')!.row).toBe(0);
    expect(layout.nodes.get('after-b')!.row).toBe(1);
  });

  it('ignores requirements on jobs it was not given, and survives a cycle', () => {
    const layout = layoutGraph([
      { id: 'x', dependencies: ['gone'] },
      { id: 'p', dependencies: ['q'] },
      { id: 'q', dependencies: ['p'] },
    ]);
    expect(layout.nodes.get('x')!.column).toBe(0);
    expect(layout.nodes.size).toBe(3);
    expect(layoutGraph([])).toMatchObject({ width: 0, height: 0 });
  });
});

describe('matrix jobs', () => {
  const job = (id: string, dependencies: string[] = [], type = 'build') => ({
    id,
    name: id,
    type,
    dependencies,
  });

  it('groups the instances of a matrix job by their shared stem and requirements', () => {
    const jobs = [
      job('lint'),
      job('test-18', ['lint']),
      job('test-20', ['lint']),
      job('test-22', ['lint']),
      job('unit-test-a'),
      job('unit-test-b'),
      job('build-linux-18'),
      job('build-linux-20'),
      job('build-mac-18'),
      job('build-mac-20'),
      // same stem as test-*, other requirements: not one of them
      job('test-e2e'),
      job('deploy-prod', ['test-18']),
    ];
    const groups = matrixGroups(jobs);
    expect(Object.fromEntries(groups)).toEqual({
      'test-18': 'test',
      'test-20': 'test',
      'test-22': 'test',
      'unit-test-a': 'unit-test',
      'unit-test-b': 'unit-test',
      'build-linux-18': 'build',
      'build-linux-20': 'build',
      'build-mac-18': 'build',
      'build-mac-20': 'build',
    });
  });

  it('lays a group out together in one frame, with room for its label', () => {
    const jobs = [job('a'), job('m-1'), job('z'), job('m-2')];
    const layout = layoutGraph(jobs, matrixGroups(jobs));
    const rows = ['a', 'm-1', 'm-2', 'z'].map((id) => layout.nodes.get(id)!.row);
    expect(rows).toEqual([0, 1, 2, 3]);
    expect(layout.groups).toHaveLength(1);
    const g = layout.groups[0]!;
    expect(g).toMatchObject({ name: 'm', size: 2 });
    const m1 = layout.nodes.get('m-1')!;
    const m2 = layout.nodes.get('m-2')!;
    expect(m1.y).toBe(g.y + GROUP_HEAD);
    expect(g.y + g.height).toBe(m2.y + NODE_HEIGHT + GROUP_PAD);
    expect(layout.nodes.get('z')!.y).toBeGreaterThanOrEqual(g.y + g.height + ROW_GAP);
    expect(layout.height).toBe(layout.nodes.get('z')!.y + NODE_HEIGHT);
  });
});
