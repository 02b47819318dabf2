// Migration 007 moves the output of steps running during an upgrade (output_chunks rows) into
// output_segments, as records the readers decode to the same chunks.
import { describe, expect, it } from 'vitest';
import { loadMigrations, migrate, PgliteDatabase } from '../storage/index.js';
import { decodeRecords } from './output-format.js';

describe('migration 007 (output segments)', () => {
  it('turns each stored chunk into an inline segment holding the same chunk', async () => {
    const db = await PgliteDatabase.open();
    try {
      const all = loadMigrations();
      await migrate(
        db,
        all.filter((m) => m.version < 7),
      );
      const taskId = '6f1c1d9e-51a4-4c55-9b0e-3f1f1d2f0a01';
      await db.query(
        `INSERT INTO output_chunks (task_id, step_index, seq, stream, ts, data)
         VALUES ($1, 2, 0, 'out', '2026-03-04T05:06:07.089Z', $2), ($1, 2, 1, 'err', '2026-03-04T05:06:08Z', $3)`,
        [taskId, 'line "one"\n\ttabbed ✓\n', 'warn\n'],
      );
      await migrate(db, all);
      const { rows } = await db.query<{
        first_seq: number;
        last_seq: number;
        bytes: number;
        data: Uint8Array;
      }>(
        'SELECT first_seq, last_seq, bytes, data FROM output_segments WHERE task_id = $1 ORDER BY first_seq',
        [taskId],
      );
      expect(rows.map((r) => [r.first_seq, r.last_seq, r.bytes])).toEqual([
        [0, 0, rows[0]!.data.byteLength],
        [1, 1, rows[1]!.data.byteLength],
      ]);
      const chunks = rows.flatMap((r) => decodeRecords(Buffer.from(r.data)));
      expect(chunks).toEqual([
        { seq: 0, stream: 'out', time: '2026-03-04T05:06:07.089Z', data: 'line "one"\n\ttabbed ✓\n' },
        { seq: 1, stream: 'err', time: '2026-03-04T05:06:08.000Z', data: 'warn\n' },
      ]);
      await expect(db.query('SELECT 1 FROM output_chunks')).rejects.toThrow(/does not exist/);
    } finally {
      await db.close();
    }
  });
});
