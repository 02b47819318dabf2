// The web app's detail pages in Debian's Chromium against a real Torus and real pipelines: add a
// project environment variable in the settings (and see it masked), trigger a pipeline with a
// parameter, see a matrix job grouped in the graph and the pipeline's configuration, search a
// job's output (next, previous, wrap-around, from the keyboard), find the failed test first in the
// tests tab with its message and time, and open an artifact. Screenshots go to a temporary
// directory, or to docs/screenshots with TORUS_UPDATE_SCREENSHOTS=1.
import { describe, expect, it } from 'vitest';
import { generateSshKey, requireSshTools } from '../harness/ssh.js';
import { api } from '../harness/torus.js';
import { hasChromium, openPage, shoot, signIn, webAppForSuite } from './web-harness.js';

// `test` stores a failed test and an artifact, prints 3,000 lines to search, then fails;
// `greet` is a matrix over a language and prints the pipeline parameter and the project variable
const CONFIG = `version: 2.1
parameters:
  greeting:
    type: string
    default: hello
jobs:
  test:
    machine: true
    steps:
      - run:
          name: Run the tests
          command: |
            mkdir -p results out
            for i in $(seq 1 3000); do printf 'log line %d of the suite\\n' $i; done
            printf '\\033[31mneedle\\033[0m in the haystack\\n'
            cat > results/junit.xml <<'XML'
            <testsuite name="unit">
              <testcase classname="cart" name="adds an item" file="cart.test.js" time="0.25"/>
              <testcase classname="cart" name="applies a discount" file="cart.test.js" time="1.5">
                <failure message="expected 90 but got 100">AssertionError: expected 90 but got 100</failure>
              </testcase>
              <testcase classname="cart" name="empties the cart" file="cart.test.js" time="0.125"/>
            </testsuite>
            XML
            echo '<h1>coverage 87%</h1>' > out/coverage.html
      - store_test_results:
          path: results
      - store_artifacts:
          path: out
          destination: reports
      - run:
          name: Fail on the failed test
          command: exit 1
  greet:
    machine: true
    parameters:
      lang:
        type: string
    steps:
      - run:
          name: Greet
          command: |
            echo "<< pipeline.parameters.greeting >> in << parameters.lang >>, secret ends ${'$'}{SHOP_SECRET: -4}"
workflows:
  ci:
    jobs:
      - test
      - greet:
          matrix:
            parameters:
              lang: [en, fr, de]
`;

const hasSshTools = hasChromium && requireSshTools('web app SSH key settings');

describe.skipIf(!hasChromium)('web app details', () => {
  const app = webAppForSuite(CONFIG, { localAgents: 2 });

  it('adds a variable, triggers with a parameter, searches output, shows tests and artifacts', async () => {
    const { server, browser, slug } = app();
    const { context, page, pageErrors } = await openPage(browser, 800);

    await page.goto(server.url);
    await signIn(page);
    await page.getByRole('link', { name: /shop/ }).click();

    // ---- project settings: a variable, shown masked; a bad name is refused with the server's word
    await page.getByRole('link', { name: 'Project settings' }).click();
    await page.getByRole('heading', { name: /Project settings/ }).waitFor();
    await expect.poll(() => page.getByText('No environment variables yet.').count()).toBe(1);
    const addVar = page.getByRole('form', { name: 'Add an environment variable' });
    await addVar.getByLabel('Name').fill('SHOP_SECRET');
    await addVar.getByLabel('Value').fill('s3cr3t-value-9876');
    await addVar.getByRole('button', { name: 'Add variable' }).click();
    const row = page.locator('tr[data-envvar="SHOP_SECRET"]');
    await row.waitFor();
    expect(await row.locator('.masked').textContent()).toBe('xxxx9876');
    expect(await page.content()).not.toContain('s3cr3t-value');
    expect(await addVar.getByLabel('Name').inputValue()).toBe('');
    // the variable is really there, masked the same way, for the API too
    const listed = await api<{ items: Array<{ name: string; value: string }> }>(
      server.url,
      'GET',
      `/api/v2/project/${slug}/envvar`,
    );
    expect(listed.body.items).toEqual([expect.objectContaining({ name: 'SHOP_SECRET', value: 'xxxx9876' })]);
    await shoot(page, 'project-settings');

    // ---- trigger with a parameter
    await page.getByRole('navigation', { name: 'Breadcrumb' }).getByRole('link', { name: 'shop' }).click();
    await page.getByRole('button', { name: 'Trigger pipeline' }).click();
    const trigger = page.getByRole('form', { name: 'Trigger a pipeline' });
    await trigger.getByRole('button', { name: 'Add parameter' }).click();
    await trigger.getByLabel('Parameter 1 name').fill('greeting');
    await trigger.getByLabel('Parameter 1 value').fill('bonjour');
    await shoot(page, 'trigger');
    await trigger.getByRole('button', { name: 'Run pipeline' }).click();
    await page.getByRole('heading', { name: 'Pipeline #1' }).waitFor();
    const created = await api<{ items: Array<{ number: number; id: string }> }>(
      server.url,
      'GET',
      `/api/v2/project/${slug}/pipeline`,
    );
    expect(created.body.items).toHaveLength(1);

    // the matrix's three instances sit in one frame named after the job
    const workflow = page.getByRole('region', { name: 'ci' });
    await expect
      .poll(() => workflow.locator('.workflow-head .badge').getAttribute('data-status'), { timeout: 60_000 })
      .toBe('failed');
    const group = workflow.locator('[data-matrix="greet"]');
    await expect.poll(() => group.textContent(), { timeout: 10_000 }).toContain('3/3 passed');
    for (const lang of ['en', 'fr', 'de']) {
      await expect.poll(() => workflow.getByRole('link', { name: `greet-${lang}: Success` }).count()).toBe(1);
    }
    await shoot(page, 'pipeline-matrix');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'pipeline-matrix-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // the configuration tab: the source as committed, and processed (the matrix expanded)
    await page.getByRole('tab', { name: 'Configuration' }).click();
    const config = page.getByRole('region', { name: 'Configuration' });
    await expect.poll(() => config.locator('pre').textContent()).toContain('lang: [en, fr, de]');
    await config.getByText('Processed').click();
    await expect.poll(() => config.locator('pre').textContent()).toContain('greet-fr');
    expect(page.url()).toContain('?tab=config');
    await shoot(page, 'pipeline-config');
    await page.getByRole('tab', { name: 'Workflows' }).click();

    // the parameter reached the job (and the variable, here only its last four characters)
    await workflow.getByRole('link', { name: 'greet-fr: Success' }).click();
    await page.getByRole('button', { name: /Greet/ }).click();
    const greetOut = page.getByRole('log', { name: 'Output of Greet' });
    await expect.poll(() => greetOut.getAttribute('data-done')).toBe('true');
    expect(await greetOut.textContent()).toContain('bonjour in fr, secret ends 9876');

    // ---- the failed job: search its output
    await page.getByRole('link', { name: /^Pipeline #1/ }).click();
    await workflow.getByRole('link', { name: 'test: Failed' }).click();
    await page.getByRole('heading', { name: /^test/ }).waitFor();
    await page.getByRole('button', { name: /Run the tests/ }).click();
    const output = page.getByRole('log', { name: 'Output of Run the tests' });
    await expect.poll(() => output.getAttribute('data-done')).toBe('true');
    expect(Number(await output.getAttribute('data-lines'))).toBeGreaterThan(3000);
    // the output is virtualized and follows its end: early lines are not in the page until searched for
    expect(await output.getByText('log line 10 of the suite').count()).toBe(0);

    // `/` in the output jumps to its search box
    await output.focus();
    await page.keyboard.press('/');
    const search = page.getByRole('searchbox', { name: 'Search Output of Run the tests' });
    expect(await search.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
    await page.keyboard.type('NEEDLE');
    const finder = page.getByRole('search', { name: 'Search Output of Run the tests' });
    const count = finder.getByRole('status');
    await expect.poll(() => count.textContent()).toBe('1 of 1');
    // scrolled to the match, marked, colours kept
    const mark = output.locator('mark.output-mark.current');
    await expect.poll(() => mark.textContent()).toBe('needle');
    expect(await mark.getAttribute('style')).toContain('var(--ansi-1)');

    // `log line 1` matches lines 1, 10–19, 100–199 and 1000–1999: 1,111 of them
    await search.fill('LOG LINE 1 ');
    await expect.poll(() => count.textContent()).toBe('1 of 1');
    await search.fill('log line 1');
    await expect.poll(() => count.textContent()).toBe('1 of 1,111');
    await page.keyboard.press('Enter');
    await expect.poll(() => count.textContent()).toBe('2 of 1,111');
    await expect
      .poll(() => mark.evaluate((el) => el.closest('.output-line')?.textContent))
      .toMatch(/^10log line 10 of the suite$/);
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.press('Shift+Enter');
    await expect.poll(() => count.textContent()).toBe('1,111 of 1,111');
    await expect
      .poll(() => mark.evaluate((el) => el.closest('.output-line')?.textContent))
      .toMatch(/^1999log line 1999 of the suite$/);
    await finder.getByRole('button', { name: 'Next match' }).click();
    await expect.poll(() => count.textContent()).toBe('1 of 1,111');
    await search.fill('haystack');
    await expect.poll(() => count.textContent()).toBe('1 of 1');
    await shoot(page, 'job-search');
    await search.focus();
    await page.keyboard.press('Escape');
    expect(await search.inputValue()).toBe('');
    await expect.poll(() => output.locator('mark').count()).toBe(0);
    // the raw output has every line
    const raw = await page
      .locator('[data-step="Run the tests"]')
      .getByRole('link', { name: 'Raw output' })
      .getAttribute('href');
    const rawText = await page.evaluate(async (href) => (await fetch(href!)).text(), raw);
    expect(rawText).toContain('log line 3000 of the suite');

    // ---- tests: the failed one first, with its message and time; the tab is in the address
    const testsTab = page.getByRole('tab', { name: /Tests/ });
    expect(await testsTab.textContent()).toContain('1 failed / 3');
    await testsTab.focus();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowLeft');
    expect(await testsTab.getAttribute('aria-selected')).toBe('true');
    expect(page.url()).toContain('?tab=tests');
    const tests = page.getByRole('region', { name: 'Test results' }).getByRole('listitem');
    await expect.poll(() => tests.count()).toBe(3);
    const first = tests.first();
    expect(await first.getAttribute('data-result')).toBe('failure');
    expect(await first.locator('.test-name').textContent()).toContain('applies a discount');
    expect(await first.locator('.test-time').textContent()).toBe('1.5s');
    expect(await first.locator('.test-message pre').textContent()).toContain('expected 90 but got 100');
    expect(await first.locator('details').getAttribute('open')).not.toBeNull();
    expect(await page.locator('.tests-summary').textContent()).toMatch(/1 failed · 2 passed/);
    await shoot(page, 'job-tests');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'job-tests-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    // filtering by name
    await page.getByLabel('Filter tests').fill('empties');
    await expect.poll(() => tests.count()).toBe(1);

    // ---- artifacts: a link that opens the file
    await page.getByRole('tab', { name: /Artifacts/ }).click();
    const link = page
      .getByRole('region', { name: 'Artifacts' })
      .getByRole('link', { name: 'reports/coverage.html' });
    await shoot(page, 'job-artifacts');
    const [opened] = await Promise.all([context.waitForEvent('page'), link.click()]);
    await opened.waitForLoadState();
    expect(opened.url()).toContain(`/api/v2/project/${slug}/`);
    expect(await opened.textContent('body')).toContain('coverage 87%');
    await opened.close();

    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it('manages SSH keys, contexts and API tokens', async () => {
    const { server, browser, slug } = app();
    const { context, page, pageErrors } = await openPage(browser, 800);
    await page.goto(`${server.url}/settings/project/${slug}`);
    await signIn(page);
    await page.getByRole('heading', { name: /Project settings/ }).waitFor();

    // an SSH key that is not one is refused with the server's message; nothing is added
    const addKey = page.getByRole('form', { name: 'Add an SSH key' });
    await addKey.getByLabel('Hostname').fill('git.example.com');
    await addKey.getByLabel('Private key').fill('not a key');
    await addKey.getByRole('button', { name: 'Add SSH key' }).click();
    await expect.poll(() => addKey.getByRole('alert').count()).toBe(1);
    expect(await page.getByText('No SSH keys yet.').count()).toBe(1);
    // a real key is listed by hostname and fingerprint, as the API (and `add_ssh_keys`) has it
    if (hasSshTools) {
      await addKey.getByLabel('Private key').fill(generateSshKey(['-t', 'ed25519']));
      await addKey.getByRole('button', { name: 'Add SSH key' }).click();
      const keyRow = page
        .getByRole('row')
        .filter({ has: page.getByRole('rowheader', { name: 'git.example.com' }) });
      await keyRow.waitFor();
      const keys = await api<Array<{ fingerprint: string; hostname: string }>>(
        server.url,
        'GET',
        `/api/v1.1/project/${slug}/ssh-key`,
      );
      expect(keys.body).toEqual([expect.objectContaining({ hostname: 'git.example.com' })]);
      expect(await keyRow.textContent()).toContain(keys.body[0]!.fingerprint);
      expect(await page.content()).not.toContain('PRIVATE KEY-----\n');
      await keyRow.getByRole('button', { name: /Delete/ }).click();
      await keyRow.getByRole('button', { name: 'Confirm delete' }).click();
      await page.getByText('No SSH keys yet.').waitFor();
    }

    // contexts of the project's organization: create one, add a variable, delete it
    await page.getByRole('link', { name: 'Organization contexts' }).click();
    await page.getByRole('heading', { name: /Contexts/ }).waitFor();
    await page.getByLabel('Context name').fill('deploy');
    await page.getByRole('button', { name: 'Create context' }).click();
    const ctx = page.getByRole('region', { name: 'deploy' });
    await ctx.waitFor();
    const addCtxVar = ctx.getByRole('form', { name: 'Add a variable to deploy' });
    await addCtxVar.getByLabel('Name').fill('DEPLOY_KEY');
    await addCtxVar.getByLabel('Value').fill('very-secret');
    await addCtxVar.getByRole('button', { name: 'Add variable' }).click();
    await ctx.getByRole('rowheader', { name: 'DEPLOY_KEY' }).waitFor();
    expect(await page.content()).not.toContain('very-secret');
    await shoot(page, 'contexts');
    await ctx.getByRole('button', { name: 'Delete DEPLOY_KEY from deploy' }).click();
    await ctx.getByRole('button', { name: 'Confirm delete' }).click();
    await ctx.getByText('No variables in this context yet.').waitFor();

    // a personal token: made, shown once, works against the API, revoked
    await page.getByRole('link', { name: 'API tokens' }).click();
    await page.getByRole('heading', { name: 'Personal API tokens' }).waitFor();
    await page.getByLabel('Label').fill('laptop CLI');
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = await page.getByLabel('New API token').inputValue();
    expect(token).toMatch(/^[0-9a-f]{40}$/);
    const me = await fetch(`${server.url}/api/v2/me`, { headers: { 'circle-token': token } });
    expect(me.status).toBe(200);
    const tokenRow = page
      .getByRole('row')
      .filter({ has: page.getByRole('rowheader', { name: 'laptop CLI' }) });
    await tokenRow.waitFor();
    expect(await tokenRow.textContent()).toContain(`${token.slice(0, 4)}…`);
    // from the keyboard: Delete, then the focus waits on Keep; one step back is Confirm delete
    await tokenRow.getByRole('button', { name: /Delete/ }).focus();
    await page.keyboard.press('Enter');
    const keep = tokenRow.getByRole('button', { name: 'Keep' });
    await expect.poll(() => keep.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Enter');
    await expect.poll(() => tokenRow.count()).toBe(0);
    const after = await fetch(`${server.url}/api/v2/me`, { headers: { 'circle-token': token } });
    expect(after.status).toBe(401);

    expect(pageErrors).toEqual([]);
    await context.close();
  });
});
