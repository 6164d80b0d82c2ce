// Signs in through the docs page's Authorize button as a developer would, in headless Chromium
// (Debian's `chromium`): Swagger UI's authorization code flow with PKCE at the issuer the api
// trusts (the local provider `make run` starts), then "Try it out" on GET /users/me with the
// token Swagger UI received. Exits non-zero, with a screenshot, when any step fails.
//
//   node scripts/docs-signin/check.mjs [API base URL] [screenshot path]
//
// Run by scripts/client-demo.sh (part of `make test`), against the services it started.
import { chromium } from 'playwright-core';

const api = process.argv[2] ?? 'http://127.0.0.1:8080';
const screenshot = process.argv[3] ?? '/tmp/docs-signin-failure.png';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const subject = `docs-${Date.now()}`;
const say = (message) => console.error(`[docs-signin] ${message}`);

const browser = await chromium.launch({
  executablePath,
  // Containers often forbid the sandbox's namespaces; the page is our own.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext();
const page = await context.newPage();
page.setDefaultTimeout(20_000);
let status = 0;
try {
  say(`opening ${api}/docs`);
  await page.goto(`${api}/docs`);
  await page.locator('.auth-wrapper button.authorize').click();

  // The dialog lists the bearer scheme and the issuer's (openIdConnect: authorization code,
  // client id and scopes filled in from the page's settings).
  const dialog = page.locator('.dialog-ux .modal-ux');
  // One block per flow the issuer's discovery offers: the authorization code one.
  const signIn = dialog
    .locator('.auth-container')
    .filter({ hasText: 'authorization_code with PKCE' })
    .first();
  await signIn.waitFor();
  say('Authorize at the issuer (authorization code with PKCE)');
  // The authorization request, as the browser sent it to the issuer.
  const requests = [];
  context.on('request', (request) => requests.push(request.url()));
  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    signIn.locator('button.authorize').click(),
  ]);
  await popup.waitForLoadState();
  const authorize = requests
    .map((url) => new URL(url))
    .find((url) => url.searchParams.has('response_type'));
  if (!authorize || authorize.searchParams.get('code_challenge_method') !== 'S256'
      || !authorize.searchParams.get('code_challenge')) {
    throw new Error(`the authorization request does not use PKCE (S256): ${authorize}`);
  }
  // oidc-provider's development login: any name signs in as that subject.
  await popup.locator('input[name="login"]').fill(subject);
  await popup.locator('input[name="password"]').fill('any');
  await popup.locator('button', { hasText: 'Sign-in' }).click();
  // Consent for the client's scopes (a page of its own, after the login), then back to the
  // docs page's OAuth receiver, which closes the popup.
  const consent = popup.locator('button', { hasText: 'Continue' });
  await consent.waitFor();
  const closed = popup.waitForEvent('close');
  await consent.click();
  await closed;
  // Authorized: the dialog now offers to log out (its flow blocks are redrawn).
  await dialog.locator('button', { hasText: 'Logout' }).first().waitFor();
  say(`signed in as ${subject}; Swagger UI holds the access token`);
  await dialog.locator('button.close-modal').click();

  // GET /users/me with that token: the api verifies it (a 404 says the token is valid and
  // its subject not registered yet; 401 would mean it was refused).
  const operation = page.locator('#operations-Users-getMe');
  await operation.locator('.opblock-summary').click();
  await operation.locator('button.try-out__btn').click();
  await operation.locator('button.execute').click();
  const code = operation.locator('.live-responses-table tbody .response-col_status').first();
  await code.waitFor();
  const answered = (await code.innerText()).trim();
  say(`GET /users/me answered ${answered}`);
  if (!answered.startsWith('404') && !answered.startsWith('200')) {
    throw new Error(`GET /users/me with the token from the docs page answered ${answered}`);
  }
  say('ok: the docs page signs in at the issuer and its token is accepted');
} catch (error) {
  status = 1;
  say(`failed: ${error.message}`);
  for (const shown of context.pages()) {
    say(`  page open: ${shown.url()}`);
  }
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  say(`screenshot of the docs page: ${screenshot}`);
} finally {
  await browser.close();
}
process.exit(status);
