-- Torus schema, version 7 (owner: scheduler/): output of running steps as segments. A segment is
-- what one agent request carried (consecutive chunks, as records: scheduler/output-format.ts):
-- small ones inline in `data`, large ones as an object in the object store (`object_key`), so a
-- step printing fast never pushes its output through the database. When the step ends its segments become one object
-- (steps.output_key) or, for large output, stay as a list of objects.
CREATE TABLE output_segments (
  task_id uuid NOT NULL,
  step_index integer NOT NULL,
  first_seq integer NOT NULL,
  last_seq integer NOT NULL,
  -- size of the records
  bytes bigint NOT NULL,
  data bytea,
  object_key text,
  PRIMARY KEY (task_id, step_index, first_seq),
  CHECK ((data IS NULL) <> (object_key IS NULL))
);

-- Output of steps running while the server was upgraded: each chunk becomes an inline segment
-- holding one JSON-line record.
INSERT INTO output_segments (task_id, step_index, first_seq, last_seq, bytes, data, object_key)
SELECT task_id, step_index, seq, seq, octet_length(line), convert_to(line, 'UTF8'), NULL
FROM (
  SELECT task_id, step_index, seq,
    json_build_object(
      'seq', seq,
      'stream', stream,
      'time', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'data', data
    )::text || E'\n' AS line
  FROM output_chunks
) c;

DROP TABLE output_chunks;
