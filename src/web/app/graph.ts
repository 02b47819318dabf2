// A workflow's jobs laid out as a graph: a job's column is the length of the longest `requires`
// chain before it, so every edge points right; within a column jobs sit near the middle of what
// they require (the parents' mean row), which keeps edges short and few of them crossing.

export interface GraphInput {
  id: string;
  dependencies: string[];
}

export interface NodePlacement {
  x: number;
  y: number;
  column: number;
  row: number;
}

export interface Edge {
  from: string;
  to: string;
  /** an SVG path from the parent's right side to the child's left side */
  path: string;
}

export interface GraphLayout {
  nodes: Map<string, NodePlacement>;
  edges: Edge[];
  width: number;
  height: number;
}

export const NODE_WIDTH = 216;
export const NODE_HEIGHT = 44;
export const COLUMN_GAP = 56;
export const ROW_GAP = 14;

export function layoutGraph(jobs: GraphInput[]): GraphLayout {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const columnOf = new Map<string, number>();
  const visiting = new Set<string>();
  const column = (id: string): number => {
    const known = columnOf.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // a cycle cannot come from a valid config; do not recurse forever
    visiting.add(id);
    const deps = (byId.get(id)?.dependencies ?? []).filter((d) => byId.has(d));
    const c = deps.length === 0 ? 0 : 1 + Math.max(...deps.map(column));
    visiting.delete(id);
    columnOf.set(id, c);
    return c;
  };
  const columns: string[][] = [];
  for (const j of jobs) (columns[column(j.id)] ??= []).push(j.id);

  const rowOf = new Map<string, number>();
  columns.forEach((ids, c) => {
    if (c > 0) {
      const order = new Map(ids.map((id, i) => [id, i]));
      const centre = (id: string) => {
        const rows = (byId.get(id)?.dependencies ?? [])
          .map((d) => rowOf.get(d))
          .filter((r) => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Number.MAX_SAFE_INTEGER;
      };
      ids.sort((a, b) => centre(a) - centre(b) || order.get(a)! - order.get(b)!);
    }
    ids.forEach((id, r) => rowOf.set(id, r));
  });

  const nodes = new Map<string, NodePlacement>();
  for (const [id, c] of columnOf) {
    const row = rowOf.get(id) ?? 0;
    nodes.set(id, { column: c, row, x: c * (NODE_WIDTH + COLUMN_GAP), y: row * (NODE_HEIGHT + ROW_GAP) });
  }
  const edges: Edge[] = [];
  for (const j of jobs) {
    const to = nodes.get(j.id)!;
    for (const d of j.dependencies) {
      const from = nodes.get(d);
      if (!from) continue;
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_HEIGHT / 2;
      const bend = COLUMN_GAP / 2;
      edges.push({
        from: d,
        to: j.id,
        path: `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}`,
      });
    }
  }
  const rows = Math.max(0, ...columns.map((ids) => ids.length));
  return {
    nodes,
    edges,
    width: columns.length ? columns.length * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP : 0,
    height: rows ? rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP : 0,
  };
}
