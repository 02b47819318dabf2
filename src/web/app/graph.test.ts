import { describe, expect, it } from 'vitest';
import { COLUMN_GAP, layoutGraph, NODE_HEIGHT, NODE_WIDTH, ROW_GAP } from './graph';

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
