// JUnit XML reports as the common tools write them, parsed into CircleCI's test items.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TorusError } from '../ops/errors.js';
import {
  MAX_MESSAGE_CHARS,
  findTestResultFiles,
  parseJUnit,
  parseJUnitFile,
  parseJUnitString,
  readTestResults,
  timingsFile,
  type TestCase,
} from './junit.js';

const SUREFIRE = `<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="com.example.CalculatorTest" time="1,201.2" tests="5" errors="1" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="17.0.9"/>
  </properties>
  <testcase name="adds" classname="com.example.CalculatorTest" time="0.012"/>
  <testcase name="divides" classname="com.example.CalculatorTest" time="1,200.5">
    <failure message="expected: &lt;2&gt; but was: &lt;3&gt;" type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.AssertionFailedError: expected: <2> but was: <3>
	at com.example.CalculatorTest.divides(CalculatorTest.java:20)]]></failure>
    <system-out><![CDATA[noise on stdout]]></system-out>
  </testcase>
  <testcase name="explodes" classname="com.example.CalculatorTest" time="0.001">
    <error message="boom" type="java.lang.NullPointerException"/>
  </testcase>
  <testcase name="later" classname="com.example.CalculatorTest" time="0">
    <skipped message="not implemented yet"/>
  </testcase>
  <testcase name="flaky" classname="com.example.CalculatorTest" time="0.3">
    <flakyFailure message="first try failed" type="java.lang.AssertionError"><stackTrace>at x</stackTrace></flakyFailure>
  </testcase>
</testsuite>
`;

const PYTEST_LEGACY = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="0" skipped="0" tests="1" time="0.010" timestamp="2026-11-01T10:00:00.000000" hostname="runner"><testcase classname="tests.test_math.TestAdd" name="test_add" file="tests/test_math.py" line="3" time="0.004" /></testsuite></testsuites>`;

const PYTEST_XUNIT2 = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.050" timestamp="2026-11-01T10:00:00.000000" hostname="runner"><testcase classname="tests.test_math.TestAdd" name="test_add" time="0.001" /><testcase classname="tests.unit.test_div" name="test_div[2-0]" time="0.002"><failure message="ZeroDivisionError: division by zero">def test_div():
&gt;       1 / 0
E       ZeroDivisionError: division by zero

tests/unit/test_div.py:9: ZeroDivisionError</failure></testcase><testcase classname="tests.test_io" name="test_remote" time="0.000"><skipped type="pytest.skip" message="no network">tests/test_io.py:3: no network</skipped></testcase></testsuite></testsuites>`;

const JEST_JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="2" failures="1" errors="0" time="1.234">
  <testsuite name="src/__tests__/App.test.js" errors="0" failures="1" skipped="0" timestamp="2026-11-01T10:00:00" time="1.1" tests="2">
    <testcase classname="App renders" name="App renders without crashing" time="0.5" file="src/__tests__/App.test.js">
    </testcase>
    <testcase classname="App math" name="App math adds" time="0.6" file="src/__tests__/App.test.js">
      <failure>Error: expect(received).toBe(expected) // Object.is equality

Expected: 3
Received: 4</failure>
    </testcase>
  </testsuite>
</testsuites>
`;

const MOCHA = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="Mocha Tests" time="0.0130" tests="2" failures="0">
  <testsuite name="Root Suite" timestamp="2026-11-01T10:00:00" tests="0" time="0.0000" failures="0">
  </testsuite>
  <testsuite name="Array" timestamp="2026-11-01T10:00:00" tests="2" file="/home/circleci/project/test/array.spec.js" time="0.0130" failures="0">
    <testcase name="Array #indexOf() returns -1 when absent" time="0.0010" classname="returns -1 when absent">
    </testcase>
    <testcase name="Array #push appends" time="0.0120" classname="appends">
    </testcase>
  </testsuite>
</testsuites>
`;

const GO_JUNIT_REPORT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1">
	<testsuite name="github.com/acme/app/pkg/store" tests="3" failures="1" errors="0" id="0" hostname="runner" time="0.020" timestamp="2026-11-01T10:00:00Z">
		<properties>
			<property name="go.version" value="go1.21.4 linux/amd64"></property>
		</properties>
		<testcase name="TestGet" classname="github.com/acme/app/pkg/store" time="0.010"></testcase>
		<testcase name="TestPut" classname="github.com/acme/app/pkg/store" time="0.005">
			<failure message="Failed"><![CDATA[    store_test.go:20: want 1, got 2]]></failure>
		</testcase>
		<testcase name="TestSlow" classname="github.com/acme/app/pkg/store" time="0.000">
			<skipped message="Skipped"><![CDATA[    store_test.go:30: slow test]]></skipped>
		</testcase>
	</testsuite>
</testsuites>
`;

const RSPEC = `<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="rspec" tests="2" skipped="0" failures="1" errors="0" time="0.050000" timestamp="2026-11-01T10:00:00+00:00" hostname="runner">
<properties>
<property name="seed" value="40213"/>
</properties>
<testcase classname="spec.models.user_spec" name="User validates the email" file="./spec/models/user_spec.rb" time="0.020000"></testcase>
<testcase classname="spec.models.user_spec" name="User escapes &lt;b&gt; in names" file="./spec/models/user_spec.rb" time="0.030000"><failure message="expected true, got false" type="RSpec::Expectations::ExpectationNotMetError">Failure/Error: expect(user.valid?).to be true

  expected true
       got false
./spec/models/user_spec.rb:12:in \`block (2 levels) in &lt;top (required)&gt;&#39;</failure></testcase>
</testsuite>
`;

const PHPUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="Project Test Suite" tests="4" assertions="4" errors="0" failures="1" skipped="0" time="0.020000">
    <testsuite name="Tests\\Unit\\MathTest" file="/app/tests/Unit/MathTest.php" tests="4" assertions="4" errors="0" failures="1" skipped="0" time="0.020000">
      <testcase name="testAdd" class="Tests\\Unit\\MathTest" classname="Tests.Unit.MathTest" file="/app/tests/Unit/MathTest.php" line="10" assertions="1" time="0.001000"/>
      <testsuite name="Tests\\Unit\\MathTest::testDivide" tests="3" assertions="3" errors="0" failures="1" skipped="0" time="0.019000">
        <testcase name="testDivide with data set #0" class="Tests\\Unit\\MathTest" classname="Tests.Unit.MathTest" file="/app/tests/Unit/MathTest.php" line="20" assertions="1" time="0.002000"/>
        <testcase name="testDivide with data set #1" class="Tests\\Unit\\MathTest" classname="Tests.Unit.MathTest" file="/app/tests/Unit/MathTest.php" line="20" assertions="1" time="0.003000">
          <failure type="PHPUnit\\Framework\\ExpectationFailedException">Tests\\Unit\\MathTest::testDivide with data set #1 (4, 0)
Failed asserting that 0 matches expected 2.

/app/tests/Unit/MathTest.php:22</failure>
        </testcase>
        <testcase name="testDivide with data set #2" class="Tests\\Unit\\MathTest" assertions="1" time="0.014000"/>
      </testsuite>
    </testsuite>
  </testsuite>
</testsuites>
`;

const CYPRESS = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="Mocha Tests" time="3.2000" tests="2" failures="1">
  <testsuite name="Root Suite" timestamp="2026-11-01T10:00:00" tests="0" file="cypress/e2e/login.cy.js" time="0.0000" failures="0">
  </testsuite>
  <testsuite name="Login" timestamp="2026-11-01T10:00:00" tests="2" time="3.2000" failures="1">
    <testcase name="Login shows the form" time="1.1000" classname="shows the form">
    </testcase>
    <testcase name="Login rejects a bad password" time="2.1000" classname="rejects a bad password">
      <failure message="Timed out retrying after 4000ms: expected to find element" type="AssertionError"><![CDATA[AssertionError: Timed out retrying after 4000ms: expected to find element: .error
    at Context.eval (webpack:///./cypress/e2e/login.cy.js:12:8)]]></failure>
    </testcase>
  </testsuite>
</testsuites>
`;

async function parse(xml: string): Promise<TestCase[]> {
  const report = await parseJUnitString(xml, 'report.xml');
  expect(report.recognized).toBe(true);
  return report.tests;
}

describe('parseJUnit: one report per tool', () => {
  it('JUnit / Surefire: results, messages, thousands separators, flaky reruns count as passed', async () => {
    const tests = await parse(SUREFIRE);
    expect(tests.map((t) => [t.name, t.result, t.runTime])).toEqual([
      ['adds', 'success', 0.012],
      ['divides', 'failure', 1200.5],
      ['explodes', 'error', 0.001],
      ['later', 'skipped', 0],
      ['flaky', 'success', 0.3],
    ]);
    expect(tests[1]?.message).toBe(
      'org.opentest4j.AssertionFailedError: expected: <2> but was: <3>\n\tat com.example.CalculatorTest.divides(CalculatorTest.java:20)',
    );
    expect(tests[2]?.message).toBe('boom'); // no body: the message attribute
    expect(tests[3]?.message).toBe('not implemented yet');
    expect(tests[4]?.message).toBeUndefined();
    expect(tests.every((t) => t.classname === 'com.example.CalculatorTest' && t.file === undefined)).toBe(
      true,
    );
  });

  it('pytest legacy keeps the file attribute; xunit2 derives the file from the classname', async () => {
    expect(await parse(PYTEST_LEGACY)).toEqual([
      {
        name: 'test_add',
        classname: 'tests.test_math.TestAdd',
        file: 'tests/test_math.py',
        result: 'success',
        runTime: 0.004,
      },
    ]);
    const tests = await parse(PYTEST_XUNIT2);
    expect(tests.map((t) => t.file)).toEqual([
      'tests/test_math.py',
      'tests/unit/test_div.py',
      'tests/test_io.py',
    ]);
    expect(tests.map((t) => t.result)).toEqual(['success', 'failure', 'skipped']);
    expect(tests[1]?.message).toContain('>       1 / 0');
    expect(tests[2]?.message).toBe('tests/test_io.py:3: no network');
  });

  it('jest-junit: file on each testcase, failure body as message', async () => {
    const tests = await parse(JEST_JUNIT);
    expect(tests).toEqual([
      {
        name: 'App renders without crashing',
        classname: 'App renders',
        file: 'src/__tests__/App.test.js',
        result: 'success',
        runTime: 0.5,
      },
      {
        name: 'App math adds',
        classname: 'App math',
        file: 'src/__tests__/App.test.js',
        result: 'failure',
        message: 'Error: expect(received).toBe(expected) // Object.is equality\n\nExpected: 3\nReceived: 4',
        runTime: 0.6,
      },
    ]);
  });

  it('mocha-junit-reporter: file from the enclosing testsuite', async () => {
    const tests = await parse(MOCHA);
    expect(tests.map((t) => [t.classname, t.file, t.runTime])).toEqual([
      ['returns -1 when absent', '/home/circleci/project/test/array.spec.js', 0.001],
      ['appends', '/home/circleci/project/test/array.spec.js', 0.012],
    ]);
  });

  it('go-junit-report: package as classname, no file, skips and failures', async () => {
    const tests = await parse(GO_JUNIT_REPORT);
    expect(tests.map((t) => [t.name, t.classname, t.result, t.message])).toEqual([
      ['TestGet', 'github.com/acme/app/pkg/store', 'success', undefined],
      ['TestPut', 'github.com/acme/app/pkg/store', 'failure', 'store_test.go:20: want 1, got 2'],
      ['TestSlow', 'github.com/acme/app/pkg/store', 'skipped', 'store_test.go:30: slow test'],
    ]);
    expect(tests.every((t) => t.file === undefined)).toBe(true);
  });

  it('RSpec JUnit formatter: file as written, entities decoded', async () => {
    const tests = await parse(RSPEC);
    expect(tests.map((t) => [t.name, t.file, t.result])).toEqual([
      ['User validates the email', './spec/models/user_spec.rb', 'success'],
      ['User escapes <b> in names', './spec/models/user_spec.rb', 'failure'],
    ]);
    expect(tests[1]?.message).toContain("in `block (2 levels) in <top (required)>'");
  });

  it('PHPUnit: nested testsuites (data providers), file and classname inherited where missing', async () => {
    const tests = await parse(PHPUNIT);
    expect(tests.map((t) => [t.name, t.classname, t.file, t.result])).toEqual([
      ['testAdd', 'Tests.Unit.MathTest', '/app/tests/Unit/MathTest.php', 'success'],
      ['testDivide with data set #0', 'Tests.Unit.MathTest', '/app/tests/Unit/MathTest.php', 'success'],
      ['testDivide with data set #1', 'Tests.Unit.MathTest', '/app/tests/Unit/MathTest.php', 'failure'],
      ['testDivide with data set #2', 'Tests\\Unit\\MathTest', '/app/tests/Unit/MathTest.php', 'success'],
    ]);
    expect(tests[3]?.runTime).toBe(0.014);
  });

  it('Cypress: the Root Suite file applies to the spec suites after it', async () => {
    const tests = await parse(CYPRESS);
    expect(tests.map((t) => [t.name, t.file, t.result, t.runTime])).toEqual([
      ['Login shows the form', 'cypress/e2e/login.cy.js', 'success', 1.1],
      ['Login rejects a bad password', 'cypress/e2e/login.cy.js', 'failure', 2.1],
    ]);
    expect(tests[1]?.message).toMatch(/^AssertionError: Timed out retrying after 4000ms/);
  });
});

describe('parseJUnit: bad and big input', () => {
  it('a file that is not XML fails with a message naming it', async () => {
    for (const text of ['not xml at all', '{"tests": []}', '<testsuite><testcase name="a">', '']) {
      const err = await parseJUnitString(text, 'test-results/out.xml').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TorusError);
      expect((err as TorusError).code).toBe('TORUS_E_TEST_RESULTS_INVALID');
      expect((err as TorusError).message).toContain(
        'store_test_results: test-results/out.xml is not a valid JUnit XML file',
      );
    }
  });

  it('well-formed XML that is not a report is recognised as such and yields no tests', async () => {
    const report = await parseJUnitString('<project><testcase name="x"/></project>', 'pom.xml');
    expect(report).toEqual({ tests: [], recognized: false });
  });

  it('streams: multi-byte characters split across chunks, a byte order mark, long messages cut', async () => {
    const xml = `\ufeff<testsuite><testcase name="héllo 日本 ✓" classname="c" time="1"><failure>${'x'.repeat(MAX_MESSAGE_CHARS * 3)}</failure></testcase></testsuite>`;
    const bytes = Buffer.from(xml, 'utf8');
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < bytes.length; i += 7) yield bytes.subarray(i, i + 7);
    }
    const report = await parseJUnit(chunks(), 'x.xml');
    expect(report.tests[0]?.name).toBe('héllo 日本 ✓');
    expect(report.tests[0]?.message?.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS + 1);
  });
});

describe('files on disk', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'torus-junit-'));
    mkdirSync(path.join(dir, 'results/rspec'), { recursive: true });
    mkdirSync(path.join(dir, 'results/jest/deeper'), { recursive: true });
    writeFileSync(path.join(dir, 'results/rspec/rspec.xml'), RSPEC);
    writeFileSync(path.join(dir, 'results/jest/deeper/junit.XML'), JEST_JUNIT);
    writeFileSync(path.join(dir, 'results/jest/coverage.xml'), '<coverage line-rate="1"/>');
    writeFileSync(path.join(dir, 'results/jest/notes.txt'), 'not a report');
    symlinkSync(path.join(dir, 'results/rspec/rspec.xml'), path.join(dir, 'results/link.xml'));
    symlinkSync(path.join(dir, 'results'), path.join(dir, 'results/jest/loop'));
    // a big report: 40 000 test cases
    const big = ['<testsuites><testsuite name="big">'];
    for (let i = 0; i < 40_000; i++)
      big.push(`<testcase classname="Big${i % 50}" name="t${i}" file="f${i % 400}.js" time="0.01"/>`);
    big.push('</testsuite></testsuites>');
    writeFileSync(path.join(dir, 'big.xml'), big.join('\n'));
    writeFileSync(path.join(dir, 'broken.xml'), '<testsuite><testcase');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('findTestResultFiles: a directory is searched recursively for *.xml; a file is itself; missing is empty', async () => {
    expect((await findTestResultFiles(path.join(dir, 'results'))).map((f) => path.relative(dir, f))).toEqual([
      'results/jest/coverage.xml',
      'results/jest/deeper/junit.XML',
      'results/link.xml',
      'results/rspec/rspec.xml',
    ]);
    expect(await findTestResultFiles(path.join(dir, 'results/jest/notes.txt'))).toEqual([
      path.join(dir, 'results/jest/notes.txt'),
    ]);
    expect(await findTestResultFiles(path.join(dir, 'nope'))).toEqual([]);
  });

  it('readTestResults: all reports under a path, non-report XML listed as ignored', async () => {
    const r = await readTestResults(path.join(dir, 'results'));
    expect(r.tests).toHaveLength(6);
    expect(r.ignored.map((f) => path.basename(f))).toEqual(['coverage.xml']);
  });

  it('a large file parses, and a broken one names itself', async () => {
    const report = await parseJUnitFile(path.join(dir, 'big.xml'));
    expect(report.tests).toHaveLength(40_000);
    expect(report.tests[39_999]).toEqual({
      name: 't39999',
      classname: 'Big49',
      file: 'f399.js',
      result: 'success',
      runTime: 0.01,
    });
    await expect(parseJUnitFile(path.join(dir, 'broken.xml'), 'test-results/broken.xml')).rejects.toThrow(
      /test-results\/broken\.xml is not a valid JUnit XML file/,
    );
  });
});

describe('timingsFile', () => {
  it('one line per test: name, classname, file, seconds; tabs and newlines flattened', () => {
    const text = timingsFile([
      { name: 'a\tb', classname: 'C\nD', file: 'spec/a.rb', result: 'success', runTime: 1.23456789 },
      { name: 'go', classname: 'pkg', result: 'failure', runTime: 0 },
    ]);
    expect(text.split('\n')).toEqual([
      '# torus test timings v1: name\tclassname\tfile\tseconds',
      'a b\tC D\tspec/a.rb\t1.234568',
      'go\tpkg\t\t0',
      '',
    ]);
  });
});
