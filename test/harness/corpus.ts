// The real corpus (../shared/corpus) as the suites that compare against it read it: its
// tab-separated indexes, and the pipeline values its configs are compiled with.
import { readFileSync } from 'node:fs';

/** The pipeline values every corpus config is compiled with, in-process and by a server alike. */
export const CORPUS_PIPELINE_VALUES = {
  'pipeline.id': '0f8e6a4e-1c2b-4d3e-9f00-123456789abc',
  'pipeline.number': 7,
  'pipeline.project.type': 'github',
  'pipeline.git.branch': 'main',
  'pipeline.git.revision': '8d2f3ab6c1e0f4b5a6978d9e0f1a2b3c4d5e6f70',
};

/** The rows of a corpus index (`INDEX.tsv`, `REFS.tsv`) below its header line, split into fields. */
export function readTsvRows(file: string): string[][] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'));
}
