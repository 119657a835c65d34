// The owner console in Firefox (issue 17: "works in current Chromium and Firefox, keyboard usable"), for
// tests/e2e/test_console_firefox.py: Debian's firefox-esr, headless, driven by puppeteer-core over WebDriver BiDi
// (stock Firefox speaks it; Playwright would need its own patched build). Every form here is filled and sent from
// the keyboard (focus, type, Tab, Enter); each page is checked to reach every control by Tab, in order.
//
// Usage: node console_firefox.mjs SERVER_URL SCREENSHOT_DIR. Prints one JSON report on stdout: what the journey
// made (tenant, agent, key), the token the approved CIBA request gave, the CSP violations the pages raised (a
// securitypolicyviolation listener installed before any page script), the tab walk of each page, and a self-check
// that an injected inline script is blocked and reported (so "no violations" means something).
import puppeteer from 'puppeteer-core';

const [server, shots] = process.argv.slice(2);
const EMAIL = 'firefox-owner@example.com';
const PASSWORD = 'correct horse battery staple';
const DETAILS = [{ type: 'payment', amount: '45.00', currency: 'USD', creditor: 'ACME Corp' }];
const report = { violations: [], errors: [], tabWalks: {}, pages: [] };
let step = 'start';

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
  headless: true,
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.setViewport({ width: 1200, height: 900 });
  page.on('pageerror', (error) => report.errors.push(`${step}: ${error.message}`));
  await page.exposeFunction('reportViolation', (what) => report.violations.push(`${step}: ${what}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.reportViolation(`${e.effectiveDirective} ${e.blockedURI}`);
    });
  });

  const open = async (name, path) => {
    step = name;
    const response = await page.goto(`${server}${path}`, { waitUntil: 'load' });
    report.pages.push({ name, status: response.status(), url: page.url() });
    return response;
  };
  const submitWith = async (selector, text) => {
    // Type into a field and send its form with Enter, as a keyboard user does.
    await page.focus(selector);
    await page.keyboard.type(text);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
  };
  const pressButton = async (selector) => {
    await page.focus(selector);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
  };
  const tabWalk = async (name) => {
    // Tab from the top of the page once per focusable control: every one must be reached, in document order.
    const total = await page.evaluate(() => {
      const controls = document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea');
      controls.forEach((el, i) => el.setAttribute('data-tab-order', String(i)));
      document.activeElement?.blur();
      return controls.length;
    });
    const reached = [];
    for (let i = 0; i < total; i += 1) {
      await page.keyboard.press('Tab');
      reached.push(await page.evaluate(() => document.activeElement?.getAttribute('data-tab-order') ?? null));
    }
    report.tabWalks[name] = { total, inOrder: reached.every((v, i) => v === String(i)), reached };
  };
  const shot = (name) => page.screenshot({ path: `${shots}/firefox-${name}.png` });

  await open('signup', '/signup?next=/account');
  await tabWalk('signup');
  await page.focus('input[name=email]');
  await page.keyboard.type(EMAIL);
  await page.keyboard.press('Tab');
  report.tabFromEmail = await page.evaluate(() => document.activeElement?.getAttribute('name'));
  await page.keyboard.type(PASSWORD);
  await shot('signup');
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
  step = 'account';
  await submitWith('input[name=name]', 'Firefox team');
  const tenant = await page.$eval('#tenant-id', (el) => el.textContent);
  report.tenant = tenant;
  await shot('account');

  await open('agents', `/console/${tenant}`);
  await page.focus('input[name=name]');
  await page.keyboard.type('fox agent');
  await page.select('select[name=agent_type]', 'tool');
  await submitWith('input[name=scopes]', 'api.read agents.read');
  report.agentId = await page.$$eval('li.agent', (items) => items.find(
    (li) => li.querySelector(':scope > strong')?.textContent === 'fox agent')?.getAttribute('data-agent-id'));
  report.agentStatus = await page.$eval(`li.agent[data-agent-id="${report.agentId}"] > span[class^=status-]`,
    (el) => el.textContent);
  await tabWalk('agents');
  await shot('agents');

  await open('keys', `/console/${tenant}/keys`);
  await page.select('select[name=agent_id]', report.agentId);
  await submitWith('input[name=name]', 'fox key');
  report.apiKey = await page.$eval('#new-api-key', (el) => el.textContent);
  await tabWalk('keys');
  await shot('keys');

  // The agent's side over HTTP: a token (the audit log shows it) and a CIBA request the owner approves here.
  const basic = 'Basic ' + Buffer.from(`${report.agentId}:${report.apiKey}`).toString('base64');
  const form = (fields) => ({ method: 'POST', headers: { Authorization: basic }, body: new URLSearchParams(fields) });
  report.tokenStatus = (await fetch(`${server}/api/v1/auth/token`, form({ grant_type: 'client_credentials' }))).status;
  const asked = await (await fetch(`${server}/api/v1/auth/bc-authorize`, form({
    login_hint: EMAIL, binding_message: 'Pay invoice 2001', authorization_details: JSON.stringify(DETAILS),
  }))).json();

  await open('audit', `/console/${tenant}/audit?action=token.issued`);
  report.auditShowsToken = await page.$$eval('#audit tr', (rows, id) => rows.some(
    (r) => r.textContent.includes('token.issued') && r.textContent.includes(id)), report.agentId);
  await tabWalk('audit');
  await shot('audit');

  await open('approvals', `/console/${tenant}/approvals`);
  report.approvalShown = await page.$eval('li.approval pre.authorization-details', (el) => JSON.parse(el.textContent));
  await tabWalk('approvals');
  await shot('approvals');
  step = 'approve';
  await pressButton('li.approval button[formaction$="/approve"], li.approval form[action$="/approve"] button');
  report.approvalStatus = await page.$eval('li.approval .approval-status', (el) => el.textContent);
  const granted = await fetch(`${server}/api/v1/auth/token`, form({
    grant_type: 'urn:openid:params:grant-type:ciba', auth_req_id: asked.auth_req_id,
  }));
  report.approvedToken = (await granted.json()).access_token ?? null;

  for (const [name, path] of [
    ['console', '/console'], ['activity', `/console/${tenant}/activity`],
    ['delegations', `/console/${tenant}/delegations`], ['clients', `/console/${tenant}/clients`],
    ['policies', `/console/${tenant}/policies`],
  ]) {
    await open(name, path);
    await tabWalk(name);
  }
  await shot('policies');

  await open('agents', `/console/${tenant}`);
  step = 'suspend';
  await pressButton(`button[aria-label="Suspend fox agent"]`);
  report.suspendNotice = await page.$eval('p[role=status], p[role=alert]', (el) => el.textContent).catch(() => null);
  report.suspended = await page.$eval(`li.agent[data-agent-id="${report.agentId}"] > span[class^=status-]`,
    (el) => el.textContent);
  report.suspensionReach = await page.$$eval('#list-reach tbody tr', (rows) => rows.map((r) => ({
    url: r.getAttribute('data-list-url'), reachedBy: r.getAttribute('data-reached-by'),
    purpose: r.cells[1].textContent,
  })));
  await shot('suspended');
  step = 'stop';
  await pressButton(`button[aria-label="Stop fox agent"]`);
  report.stopped = await page.$eval(`li.agent[data-agent-id="${report.agentId}"] > span[class^=status-]`,
    (el) => el.textContent);

  // Self-check: the page's CSP is enforced here and a violation reaches the report.
  step = 'csp-self-check';
  report.injectedScriptRan = await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.injectedRan = true';
    document.body.append(script);
    return window.injectedRan === true;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));

  await open('logout-page', '/account');
  step = 'logout';
  await pressButton('form[action="/logout"] button, form[action$="/logout"] button');
  await open('after-logout', `/console/${tenant}`);
  report.afterLogoutUrl = page.url();
} catch (error) {
  report.failure = `${step}: ${error.stack || error}`;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
