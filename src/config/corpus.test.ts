// The real-world corpus (/work/shared/corpus): every config the index calls valid compiles, every
// invalid one fails naming its problem, and processing the processed output changes nothing.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileConfig, type CompileResult } from './index.js';
import { corpusOrbResolver, corpusResolvesAll, CORPUS_DIR } from './corpus-orbs.js';

/** The pipeline values a GitHub push to main would have. */
const PIPELINE_VALUES = {
  'pipeline.id': '0f8e6a4e-1c2b-4d3e-9f00-123456789abc',
  'pipeline.number': 7,
  'pipeline.project.type': 'github',
  'pipeline.project.git_url': 'https://github.com/example/repo',
  'pipeline.git.branch': 'main',
  'pipeline.git.tag': '',
  'pipeline.git.revision': '8d2f3ab6c1e0f4b5a6978d9e0f1a2b3c4d5e6f70',
  'pipeline.git.base_revision': '',
  'pipeline.trigger_source': 'webhook',
};

const CONFIGS = join(CORPUS_DIR, 'configs');
const present = existsSync(join(CORPUS_DIR, 'INDEX.tsv'));

interface Row {
  file: string;
  version: string;
  validity: string;
  orbs: string[];
}

function readIndex(): Row[] {
  const lines = readFileSync(join(CORPUS_DIR, 'INDEX.tsv'), 'utf8').trim().split('\n');
  return lines.slice(1).map((line) => {
    const c = line.split('\t');
    return { file: c[0]!, version: c[4]!, validity: c[6]!, orbs: (c[8] ?? '').split(' ').filter(Boolean) };
  });
}

const resolver = present ? corpusOrbResolver() : undefined;

async function compileFile(file: string, withOrbs = false): Promise<CompileResult> {
  return compileConfig(
    readFileSync(join(CONFIGS, file), 'utf8'),
    withOrbs ? { orbResolver: resolver, pipelineValues: PIPELINE_VALUES } : {},
  );
}

/** What an invalid row's reason must show up as in our errors. */
const EXPECTED_PROBLEM: Record<string, RegExp> = {
  'invalid-yaml': /TORUS_E_CONFIG_YAML .*[Tt]ab/,
  'invalid-duplicate-key': /TORUS_E_CONFIG_YAML .*unique/,
  'invalid-undefined-executor': /TORUS_E_CONFIG_UNKNOWN_EXECUTOR .*executor "go"/,
};

describe.skipIf(!present)('corpus', () => {
  const rows = present ? readIndex() : [];

  it('compiles every valid config without orbs, and rejects every invalid one with the reason', async () => {
    const counts = { valid: 0, validOk: 0, invalid: 0, invalidOk: 0, uncertain: 0 };
    const failures: string[] = [];
    for (const row of rows) {
      if (row.validity.startsWith('uncertain')) {
        counts.uncertain++;
        continue;
      }
      if (row.validity.startsWith('valid')) {
        if (row.orbs.length > 0) continue;
        counts.valid++;
        const r = await compileFile(row.file);
        if (r.ok) counts.validOk++;
        else failures.push(`${row.file}: ${r.errors.map((e) => e.message).join('; ')}`);
        continue;
      }
      counts.invalid++;
      const r = await compileFile(row.file, true);
      const kind = row.validity.split(':')[0]!;
      const text = r.ok ? '' : r.errors.map((e) => `${e.code} ${e.message}`).join('\n');
      if (!r.ok && (EXPECTED_PROBLEM[kind] ?? /./).test(text)) counts.invalidOk++;
      else failures.push(`${row.file} (${row.validity}): ${r.ok ? 'compiled' : text}`);
    }
    console.log(
      `corpus without orbs: ${counts.validOk}/${counts.valid} valid compiled; ${counts.invalidOk}/${counts.invalid} invalid rejected; ${counts.uncertain} uncertain skipped`,
    );
    expect(failures).toEqual([]);
    expect(counts.valid).toBeGreaterThan(40);
  });

  it('re-processing the processed output of every valid config gives the same output', async () => {
    let n = 0;
    for (const row of rows) {
      if (!row.validity.startsWith('valid') || row.orbs.length > 0) continue;
      const r = await compileFile(row.file);
      if (!r.ok) continue;
      const again = await compileConfig(r.processedYaml);
      expect(again.ok, row.file).toBe(true);
      if (again.ok) {
        expect(again.processedYaml, row.file).toBe(r.processedYaml);
        expect(again.config.workflows, row.file).toEqual(r.config.workflows);
      }
      n++;
    }
    expect(n).toBeGreaterThan(40);
  });

  it('compiles every valid config whose orbs resolve in the corpus', async () => {
    let tried = 0;
    let compiled = 0;
    let missingImport = 0;
    const failures: string[] = [];
    for (const row of rows) {
      if (!row.validity.startsWith('valid') || row.orbs.length === 0 || !corpusResolvesAll(row.orbs))
        continue;
      tried++;
      const r = await compileFile(row.file, true);
      if (r.ok) {
        compiled++;
        const again = await compileConfig(r.processedYaml);
        if (!again.ok || again.processedYaml !== r.processedYaml)
          failures.push(`${row.file}: re-processing changed the output`);
        continue;
      }
      // orbs whose own imports were never published as tags cannot be fully expanded (corpus README)
      if (r.errors.every((e) => e.code === 'TORUS_E_CONFIG_UNKNOWN_ORB' && /imported by orb/.test(e.message)))
        missingImport++;
      else failures.push(`${row.file}: ${r.errors.map((e) => `${e.code} ${e.message}`).join('; ')}`);
    }
    console.log(
      `corpus with orbs: ${compiled}/${tried} compiled; ${missingImport} need an orb import the corpus lacks`,
    );
    expect(failures).toEqual([]);
    expect(compiled).toBeGreaterThan(15);
  });

  it('expands gorilla/mux matrix jobs with CircleCI names', async () => {
    const r = await compileFile('gorilla__mux.yml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const wf = r.config.workflows.find((w) => w.name === 'tests')!;
    expect(wf.jobs.map((j) => j.name)).toEqual([
      'test-latest',
      'test-1.15',
      'test-1.14',
      'test-1.13',
      'test-1.12',
      'test-1.11',
    ]);
    const job = r.config.jobs[wf.jobs[1]!.job!]!;
    expect(job.executor.type).toBe('docker');
    expect(job.executor.type === 'docker' && job.executor.images[0]!.image).toBe('circleci/golang:1.15');
    expect(job.steps).toHaveLength(7);
  });

  it('wires sunpy matrix requires between paired instances', async () => {
    const r = await compileFile('sunpy__sunpy.yml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const wf = r.config.workflows.find((w) => w.name === 'figure-tests')!;
    const edges = Object.fromEntries(wf.jobs.map((j) => [j.name, j.requires.map((q) => q.name)]));
    expect(edges).toEqual({
      'py312-figure': [],
      'py312-figure-devdeps': [],
      'baseline-py312-figure': ['py312-figure'],
      'baseline-py312-figure-devdeps': ['py312-figure-devdeps'],
    });
    expect(r.config.jobs['py312-figure']!.environment.TOXENV).toBe('py312-figure');
  });

  it('expands apollo-client commands and named matrix jobs', async () => {
    const r = await compileFile('apollographql__apollo-client.yml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const wf = r.config.workflows[0]!;
    expect(wf.jobs).toHaveLength(34);
    const t = wf.jobs.find((j) => j.name === 'Tests-ReactDOM 18')!;
    expect(t.requires).toEqual([{ name: 'BuildTarball', statuses: ['success'] }]);
    expect(r.config.jobs[t.job!]!.steps).toHaveLength(12);
  });
});
