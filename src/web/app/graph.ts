// A workflow's jobs laid out as a graph: a job's column is the length of the longest `requires`
// chain before it, so every edge points right; within a column jobs sit near the middle of what
// they require (the parents' mean row), which keeps edges short and few of them crossing. The
// instances of a matrix job sit together in a frame labelled with the job's name.

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

/** a frame drawn around the instances of one matrix job */
export interface GroupBox {
  name: string;
  size: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface GraphLayout {
  nodes: Map<string, NodePlacement>;
  edges: Edge[];
  groups: GroupBox[];
  width: number;
  height: number;
}

export const NODE_WIDTH = 216;
export const NODE_HEIGHT = 44;
export const COLUMN_GAP = 56;
export const ROW_GAP = 14;
/** px above a matrix group's first job, for its label; and below its last */
export const GROUP_HEAD = 22;
export const GROUP_PAD = 8;

export interface MatrixInput {
  id: string;
  name: string;
  type?: string;
  dependencies: string[];
}

/**
 * Which jobs are instances of one matrix job. The API does not say, but CircleCI names a matrix
 * job's instances `{job}-{value}-{value}…` and gives them all the same `requires`: jobs with the
 * same requirements and type whose names share a stem ending in `-`, two or more of them, are
 * taken as one matrix: the stem that most of them share (`build` for `build-linux-18` …
 * `build-mac-20`), the longest of equals (`unit-test` for `unit-test-18`, `unit-test-20`).
 * Answers job id → the group's name.
 */
export function matrixGroups(jobs: MatrixInput[]): Map<string, string> {
  const key = (j: MatrixInput, stem: string) =>
    `${j.type ?? ''}\u0000${[...j.dependencies].sort().join('\u0001')}\u0000${stem}`;
  const stemsOf = (name: string): string[] => {
    const out: string[] = [];
    for (let i = name.indexOf('-'); i > 0; i = name.indexOf('-', i + 1)) {
      if (i < name.length - 1) out.push(name.slice(0, i));
    }
    return out;
  };
  const counts = new Map<string, number>();
  for (const j of jobs)
    for (const stem of stemsOf(j.name)) counts.set(key(j, stem), (counts.get(key(j, stem)) ?? 0) + 1);
  const groups = new Map<string, string>();
  for (const j of jobs) {
    let best: string | undefined;
    let bestCount = 1;
    for (const stem of stemsOf(j.name)) {
      const n = counts.get(key(j, stem)) ?? 0;
      if (n >= bestCount && n >= 2) {
        best = stem;
        bestCount = n;
      }
    }
    if (best !== undefined) groups.set(j.id, best);
  }
  // a stem is a group only when all the jobs it names fall in it with the same requirements
  const members = new Map<string, number>();
  for (const [id, stem] of groups) {
    const j = jobs.find((x) => x.id === id)!;
    members.set(key(j, stem), (members.get(key(j, stem)) ?? 0) + 1);
  }
  for (const [id, stem] of groups) {
    const j = jobs.find((x) => x.id === id)!;
    if ((members.get(key(j, stem)) ?? 0) < 2) groups.delete(id);
  }
  return groups;
}

export function layoutGraph(jobs: GraphInput[], groupOf: Map<string, string> = new Map()): GraphLayout {
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
    // a matrix's instances stay together, where its first one fell
    const firstAt = new Map<string, number>();
    ids.forEach((id, i) => {
      const g = groupOf.get(id);
      if (g !== undefined && !firstAt.has(g)) firstAt.set(g, i);
    });
    const at = new Map(ids.map((id, i) => [id, i]));
    const slot = (id: string) => {
      const g = groupOf.get(id);
      return g === undefined ? at.get(id)! : firstAt.get(g)!;
    };
    ids.sort((a, b) => slot(a) - slot(b) || at.get(a)! - at.get(b)!);
    ids.forEach((id, r) => rowOf.set(id, r));
  });

  const nodes = new Map<string, NodePlacement>();
  const groups: GroupBox[] = [];
  let height = 0;
  columns.forEach((ids, c) => {
    const x = c * (NODE_WIDTH + COLUMN_GAP);
    let y = 0;
    let open: GroupBox | undefined;
    ids.forEach((id, row) => {
      const g = groupOf.get(id);
      if (open && open.name !== g) {
        open.height = y - ROW_GAP + GROUP_PAD - open.y;
        y += GROUP_PAD;
        open = undefined;
      }
      if (g !== undefined && !open) {
        open = { name: g, size: 0, x: x - GROUP_PAD, y, width: NODE_WIDTH + 2 * GROUP_PAD, height: 0 };
        groups.push(open);
        y += GROUP_HEAD;
      }
      if (open) open.size++;
      nodes.set(id, { column: c, row, x, y });
      y += NODE_HEIGHT + ROW_GAP;
    });
    if (open) {
      open.height = y - ROW_GAP + GROUP_PAD - open.y;
      y += GROUP_PAD;
    }
    height = Math.max(height, y - ROW_GAP);
  });
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
  return {
    nodes,
    edges,
    groups,
    width: columns.length ? columns.length * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP : 0,
    height: Math.max(0, height),
  };
}
