// JUnit XML test reports for `store_test_results`: finding the report files under a path (CircleCI:
// a single file, or a directory searched recursively for *.xml), parsing them with a streaming SAX
// parser (saxes) into CircleCI's test items, and writing the timings file the in-job
// `circleci tests split` reads (see src/agent/shim/README.md for its format).
//
// Reports from the common tools differ in where they put things; this module reads them all:
// - JUnit/Surefire/Gradle, go-junit-report/gotestsum: <testsuite><testcase classname name time>, no file
// - pytest (junit_family=legacy|xunit1), RSpec JUnit formatter, jest-junit (addFileAttribute),
//   PHPUnit: `file` on <testcase>; PHPUnit nests <testsuite> (per class, per data provider)
// - mocha-junit-reporter: `file` on <testsuite>; Cypress: `file` only on the first "Root Suite"
//   <testsuite>, which the following sibling suites of the same spec inherit
// - pytest xunit2 (no file attribute): the file is derived from the dotted classname
import { createReadStream } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { SaxesParser } from 'saxes';
import { TorusError } from '../ops/errors.js';

/** One test, in the shape of CircleCI's `GET /project/{slug}/{job-number}/tests` items (runTime in seconds). */
export interface TestCase {
  name: string;
  classname: string;
  file?: string;
  result: 'success' | 'failure' | 'error' | 'skipped';
  message?: string;
  runTime: number;
}

export interface ParsedReport {
  tests: TestCase[];
  /** false when the file is well-formed XML but not a JUnit report (e.g. a coverage.xml beside the reports) */
  recognized: boolean;
}

/** A failure message longer than this is cut (reports can hold megabytes of captured output). */
export const MAX_MESSAGE_CHARS = 16_384;

/** Which files a `store_test_results` path names: the file itself, or every *.xml under a directory (sorted). */
export async function findTestResultFiles(resultsPath: string): Promise<string[]> {
  let info;
  try {
    info = await stat(resultsPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  if (!info.isDirectory()) return [resultsPath];
  const found: string[] = [];
  await walk(resultsPath, found);
  return found.sort();
}

async function walk(dir: string, found: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      await walk(full, found);
    } else if (isTestResultFile(entry.name)) {
      // a symlink counts when it points at a file; directory symlinks are not followed (no loops)
      if (entry.isFile() || (entry.isSymbolicLink() && (await isFileBehindLink(full)))) found.push(full);
    }
  }
}

async function isFileBehindLink(full: string): Promise<boolean> {
  try {
    return (await lstat(full)).isSymbolicLink() && (await stat(full)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // a dangling link holds no results
    throw err;
  }
}

/** Whether a file met while searching a results directory is a report (CircleCI: files ending in .xml). */
export function isTestResultFile(name: string): boolean {
  return name.toLowerCase().endsWith('.xml');
}

/** Parses one report file. Throws TorusError naming the file when it is not XML. */
export async function parseJUnitFile(file: string, label = file): Promise<ParsedReport> {
  return parseJUnit(createReadStream(file), label);
}

/** Parses every report under a `store_test_results` path; `ignored` lists XML files that are not JUnit reports. */
export async function readTestResults(
  resultsPath: string,
): Promise<{ tests: TestCase[]; files: string[]; ignored: string[] }> {
  const files = await findTestResultFiles(resultsPath);
  const tests: TestCase[] = [];
  const ignored: string[] = [];
  for (const file of files) {
    const report = await parseJUnitFile(file);
    if (!report.recognized) ignored.push(file);
    for (const t of report.tests) tests.push(t);
  }
  return { tests, files, ignored };
}

interface SuiteFrame {
  name: string;
  file?: string;
  /** the tool that wrote the report, from the root element or the suite name (pytest's suite is "pytest") */
  pytest: boolean;
}

interface CaseFrame {
  name: string;
  classname: string;
  file?: string;
  runTime: number;
  result: TestCase['result'];
  message?: string;
  /** the failure/error/skipped element being read, whose text becomes the message */
  outcomeDepth?: number;
  outcomeText: string;
  outcomeAttr?: string;
}

/**
 * Parses a JUnit XML report from a stream of bytes or text, chunk by chunk (never the whole file
 * in memory). `label` names the file in errors, e.g. "test-results/junit.xml".
 */
export async function parseJUnit(
  source: AsyncIterable<Buffer | string | Uint8Array> | Iterable<Buffer | string | Uint8Array>,
  label: string,
): Promise<ParsedReport> {
  const parser = new SaxesParser({ position: true });
  const tests: TestCase[] = [];
  const suites: SuiteFrame[] = [];
  let rootSeen = false;
  let recognized = false;
  let depth = 0;
  let current: CaseFrame | undefined;
  let caseDepth = -1;
  // Cypress / mocha: a file-bearing "Root Suite" lends its file to the sibling suites after it
  let rootSuiteFile: string | undefined;
  let pytestReport = false;

  parser.on('opentag', (tag) => {
    depth++;
    const name = tag.name;
    const attrs = tag.attributes as Record<string, string>; // plain strings: namespaces are not tracked
    if (!rootSeen) {
      rootSeen = true;
      recognized = name === 'testsuites' || name === 'testsuite';
    }
    if (!recognized) return;
    if (name === 'testsuite') {
      const parent = suites[suites.length - 1];
      const suiteName = attrs.name ?? '';
      let file = nonEmpty(attrs.file) ?? nonEmpty(attrs.filepath) ?? parent?.file;
      if (suiteName === 'Root Suite' && suites.length === 0) rootSuiteFile = nonEmpty(attrs.file);
      if (file === undefined && suites.length === 0) file = rootSuiteFile;
      if (suiteName === 'pytest') pytestReport = true;
      suites.push({ name: suiteName, file, pytest: pytestReport });
      return;
    }
    if (name === 'testcase' && current === undefined) {
      const suite = suites[suites.length - 1];
      const classname = nonEmpty(attrs.classname) ?? nonEmpty(attrs.class) ?? suite?.name ?? '';
      current = {
        name: attrs.name ?? '',
        classname,
        file: nonEmpty(attrs.file) ?? suite?.file ?? (suite?.pytest ? pytestFile(classname) : undefined),
        runTime: parseSeconds(attrs.time),
        result: 'success',
        outcomeText: '',
      };
      caseDepth = depth;
      return;
    }
    if (current !== undefined && depth === caseDepth + 1) {
      const outcome = outcomeOf(name);
      // the first failure/error decides; <skipped> only when nothing failed
      if (
        outcome !== undefined &&
        (current.result === 'success' || (current.result === 'skipped' && outcome !== 'skipped'))
      ) {
        current.result = outcome;
        current.outcomeDepth = depth;
        current.outcomeText = '';
        current.outcomeAttr = nonEmpty(attrs.message);
      }
    }
  });

  const onText = (text: string): void => {
    if (current?.outcomeDepth === undefined || depth < current.outcomeDepth) return;
    if (current.outcomeText.length < MAX_MESSAGE_CHARS) current.outcomeText += text;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);

  parser.on('closetag', (tag) => {
    if (current !== undefined) {
      if (depth === current.outcomeDepth) {
        const text = current.outcomeText.trim();
        current.message = truncate(text !== '' ? text : current.outcomeAttr);
        current.outcomeDepth = -1; // closed: later text (system-out) is not the message
      } else if (depth === caseDepth && tag.name === 'testcase') {
        const t: TestCase = {
          name: current.name,
          classname: current.classname,
          result: current.result,
          runTime: current.runTime,
        };
        if (current.file !== undefined) t.file = current.file;
        if (current.message !== undefined && current.message !== '') t.message = current.message;
        tests.push(t);
        current = undefined;
        caseDepth = -1;
      }
    } else if (recognized && tag.name === 'testsuite') {
      suites.pop();
    }
    depth--;
  });

  const decoder = new TextDecoder('utf-8');
  try {
    let first = true;
    for await (const chunk of source) {
      let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
      if (first && text.length > 0) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 byte order mark
        first = false;
      }
      parser.write(text);
    }
    parser.write(decoder.decode());
    parser.close();
  } catch (err) {
    if (err instanceof Error && (err as NodeJS.ErrnoException).code !== undefined) throw err; // I/O, not syntax
    throw new TorusError(
      'TORUS_E_TEST_RESULTS_INVALID',
      `store_test_results: ${label} is not a valid JUnit XML file: ${describeSyntaxError(err)}. ` +
        'Point store_test_results at the directory or file your test runner writes its JUnit XML report to.',
    );
  }
  return { tests, recognized };
}

/** saxes says "undefined:3:14: unclosed tag: testcase"; users read "unclosed tag: testcase (line 3, column 14)". */
function describeSyntaxError(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m = /^(?:[^:]*:)?(\d+):(\d+): (.*?)\.?$/s.exec(text);
  return m ? `${m[3]} (line ${m[1]}, column ${m[2]})` : text;
}

/** Parses a report held in memory (small reports, tests). */
export function parseJUnitString(xml: string, label: string): Promise<ParsedReport> {
  return parseJUnit([xml], label);
}

function outcomeOf(element: string): TestCase['result'] | undefined {
  switch (element) {
    case 'failure':
      return 'failure';
    case 'error':
      return 'error';
    case 'skipped':
      return 'skipped';
    default:
      return undefined; // system-out, properties, Surefire's flakyFailure/rerunFailure (the test passed in the end)
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function truncate(text: string | undefined): string | undefined {
  if (text === undefined || text.length <= MAX_MESSAGE_CHARS) return text;
  return text.slice(0, MAX_MESSAGE_CHARS) + '…';
}

/** JUnit `time` in seconds; Surefire writes thousands separators ("1,234.5"), a missing or bad value is 0. */
function parseSeconds(value: string | undefined): number {
  if (value === undefined) return 0;
  const n = Number(value.replace(/,/g, '').trim());
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** pytest xunit2 classnames are "pkg.module.Class": the module path is the leading lower-case parts. */
function pytestFile(classname: string): string | undefined {
  const parts = classname.split('.');
  while (parts.length > 1 && /^[A-Z]/.test(parts[parts.length - 1] ?? '')) parts.pop();
  if (parts.length === 0 || parts[0] === '') return undefined;
  return parts.join('/') + '.py';
}

/**
 * The timings file staged into a job for `circleci tests split --split-by=timings`: one test case
 * per line, `name<TAB>classname<TAB>file<TAB>seconds`, after a `#` header. Tabs and line breaks
 * inside values become spaces.
 */
export function timingsFile(tests: readonly TestCase[]): string {
  const lines = ['# torus test timings v1: name\tclassname\tfile\tseconds'];
  for (const t of tests) {
    const seconds = Number.isFinite(t.runTime) && t.runTime > 0 ? t.runTime : 0;
    lines.push([clean(t.name), clean(t.classname), clean(t.file ?? ''), formatSeconds(seconds)].join('\t'));
  }
  return lines.join('\n') + '\n';
}

function clean(value: string): string {
  return value.replace(/[\t\r\n]+/g, ' ');
}

function formatSeconds(seconds: number): string {
  return String(Math.round(seconds * 1e6) / 1e6);
}
