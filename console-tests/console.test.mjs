// Browser tests of the web console: headless Debian Chromium driven by
// playwright-core, against a running platform (scripts/console-test.sh
// starts it and passes BASE and tokens in the environment).
//
// Every test waits with bounded timeouts, never fixed sleeps. Screenshots of
// every page go to SCREENSHOT_DIR.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE;
const OPS = process.env.OPS_TOKEN;
const CUSTOMER = process.env.CUSTOMER_TOKEN;
const RESTAURANT = process.env.RESTAURANT_TOKEN;
const RIDER = process.env.RIDER_TOKEN;
const RIDER_ID = process.env.RIDER_ID;
const SHOTS = process.env.SCREENSHOT_DIR;
const BERLIN_BURGERS = '00000001-0000-4000-8000-000000000001';
const BURGER = '00000002-0000-4000-8000-000000010001';

mkdirSync(SHOTS, { recursive: true });

// ---- API helpers -------------------------------------------------------------

async function call(method, path, token, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['idempotency-key'] = randomUUID();
  }
  const res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, json, text };
}

async function eventually(what, timeoutMs, check) {
  const start = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function expect(cond, message) { if (!cond) throw new Error(message); }

async function placeOrder() {
  const r = await call('POST', '/v1/orders', CUSTOMER, {
    restaurant_id: BERLIN_BURGERS,
    items: [{ menu_item_id: BURGER, quantity: 2 }],
    delivery_address: { street: 'Oranienstraße 25', city: 'Berlin', postal_code: '10999', location: { lat: 52.5003, lon: 13.4215 } },
    payment_method: { kind: 'card', card_token: 'tok_visa' },
    tip_minor: 150,
  });
  expect(r.status === 201, `place order: ${r.status} ${r.text}`);
  return r.json.aggregate_id;
}

/** `Uuid::new_v5(namespace, name)`: the delivery id of an order. */
function uuidV5(namespace, name) {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(Buffer.concat([ns, Buffer.from(name)])).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---- browser -----------------------------------------------------------------

const profile = mkdtempSync(join(tmpdir(), 'ordertrail-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  acceptDownloads: true,
  viewport: { width: 1440, height: 900 },
});
const external = [];
const pageErrors = [];
await context.route('**/*', (route) => {
  const url = new URL(route.request().url());
  if (url.hostname === '127.0.0.1' || url.hostname === 'localhost') return route.continue();
  external.push(url.href);
  return route.abort();
});

async function openPage(hash, token) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[34]/.test(m.text())) pageErrors.push(m.text()); });
  await page.goto(`${BASE}/console/#token=${encodeURIComponent(token)}`);
  if (hash !== 'board') await page.evaluate((h) => { location.hash = h; }, `#${hash}`);
  await page.waitForSelector(`body[data-ready="${hash.split('/')[0]}"]`, { timeout: 15000 });
  return page;
}

const results = [];
async function test(name, body) {
  const start = Date.now();
  try {
    await body();
    results.push({ name, ok: true, ms: Date.now() - start });
    console.log(`  ok   ${name} (${Date.now() - start} ms)`);
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - start });
    console.log(`  FAIL ${name}: ${e.stack || e}`);
  }
}

let board;
let placedOrder;

await test('the console loads offline: every request goes to this host', async () => {
  board = await openPage('board', OPS);
  await board.waitForSelector('#board-live.on', { timeout: 10000 });
  expect(await board.locator('.column').count() === 7, 'seven status columns');
  expect(external.length === 0, `external requests: ${external.join(', ')}`);
});

await test('an order placed through the API appears on the board within 2 s', async () => {
  placedOrder = await placeOrder();
  const t0 = Date.now();
  await board.waitForSelector(`.order[data-order-id="${placedOrder}"]`, { timeout: 2000 });
  const elapsed = Date.now() - t0;
  console.log(`       on the board ${elapsed} ms after the command answered`);
  expect(elapsed <= 2000, `took ${elapsed} ms`);
  await board.screenshot({ path: join(SHOTS, 'board.png'), fullPage: true });
});

await test('the order detail shows the money breakdown and the audit history', async () => {
  await eventually('the order in the read model', 10000, async () => (await call('GET', `/v1/orders/${placedOrder}`, OPS)).status === 200);
  const page = await openPage(`order/${placedOrder}`, OPS);
  await page.waitForSelector('#order-audit tr.clickable', { timeout: 10000 });
  const money = await page.locator('#order-money').innerText();
  expect(/Total/.test(money) && /EUR/.test(money), `money breakdown: ${money}`);
  await page.fill('#asof-version', '1');
  await page.click('#asof-form button');
  await page.waitForFunction(() => /"version": 1/.test(document.getElementById('asof-result').textContent), null, { timeout: 15000 });
  await page.screenshot({ path: join(SHOTS, 'order.png'), fullPage: true });
  await page.close();
});

await test("a rider's reported position moves on the map", async () => {
  const order = await placeOrder();
  await eventually('the saga to confirm the order', 15000, async () => {
    const r = await call('GET', `/v1/orders/${order}`, OPS);
    return r.status === 200 && r.json.order.status === 'confirmed';
  });
  const accepted = await call('POST', `/v1/orders/${order}/accept`, RESTAURANT, { preparation_minutes: 10 });
  expect(accepted.status === 200, `accept: ${accepted.text}`);
  const delivery = uuidV5(order, 'delivery');
  await eventually('the saga to request the delivery', 15000, async () =>
    (await call('POST', `/v1/deliveries/${delivery}/assign`, RIDER, { rider_id: RIDER_ID })).status === 200);
  // Fixes a minute apart (device time): a plausible cycling speed.
  const firstFixAt = Date.now() - 60000;
  const report = async (lat, lon, at) => {
    const r = await call('POST', `/v1/deliveries/${delivery}/locations`, RIDER, { lat, lon, reported_at: new Date(at).toISOString(), accuracy_m: 5 });
    expect(r.status === 200, `location: ${r.text}`);
  };
  await report(52.5070, 13.3900, firstFixAt);
  const page = await openPage('map', OPS);
  await page.selectOption('#map-city', 'Berlin');
  const rider = page.locator(`circle.rider[data-delivery-id="${delivery}"]`);
  await rider.waitFor({ timeout: 10000 });
  const before = { cx: await rider.getAttribute('cx'), cy: await rider.getAttribute('cy') };
  await report(52.5040, 13.4050, firstFixAt + 60000);
  await page.waitForFunction(({ id, lat }) => {
    const c = document.querySelector(`circle.rider[data-delivery-id="${id}"]`);
    return c && c.getAttribute('data-lat') === String(lat);
  }, { id: delivery, lat: 52.504 }, { timeout: 15000 });
  const after = { cx: await rider.getAttribute('cx'), cy: await rider.getAttribute('cy') };
  expect(before.cx !== after.cx && before.cy !== after.cy, `the rider did not move: ${JSON.stringify([before, after])}`);
  await page.waitForTimeout(700); // let the move animation finish before the screenshot
  await page.screenshot({ path: join(SHOTS, 'map.png'), fullPage: true });
  await page.close();
});

await test('the settlements CSV downloads and reconciliation runs', async () => {
  const page = await openPage('settlements', OPS);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10000 }), page.click('#st-csv')]);
  const path = await download.path();
  const csv = readFileSync(path, 'utf8');
  expect(download.suggestedFilename().endsWith('.csv'), `file name ${download.suggestedFilename()}`);
  expect(/restaurant_id/.test(csv.split('\n')[0]), `CSV header: ${csv.split('\n')[0]}`);
  await page.click('#st-reconcile');
  await page.waitForSelector('#st-recon p', { timeout: 15000 });
  await page.screenshot({ path: join(SHOTS, 'settlements.png'), fullPage: true });
  await page.close();
});

await test('the health page shows the relay and every consumer', async () => {
  const page = await openPage('health', OPS);
  await page.waitForFunction(() => document.querySelectorAll('#health-consumers tr').length >= 5, null, { timeout: 10000 });
  await page.screenshot({ path: join(SHOTS, 'health.png'), fullPage: true });
  await page.close();
});

await test('a customer token cannot open ops pages (the API answers 403)', async () => {
  for (const hash of ['board', 'map', 'settlements', 'health']) {
    const page = await openPage(hash, CUSTOMER);
    await page.waitForSelector('#banner:not(.hidden)', { timeout: 15000 });
    const text = await page.locator('#banner').innerText();
    expect(/Forbidden/.test(text) && /403/.test(text), `${hash}: ${text}`);
    expect(await page.locator('#board .order').count() === 0, `${hash}: no orders shown`);
    if (hash === 'board') await page.screenshot({ path: join(SHOTS, 'forbidden.png'), fullPage: true });
    await page.close();
  }
});

await test('no external request and no script error on any page', async () => {
  expect(external.length === 0, `external requests: ${external.join(', ')}`);
  expect(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
});

await context.close();
rmSync(profile, { recursive: true, force: true });
const failed = results.filter((r) => !r.ok);
console.log(`console browser tests: ${results.length - failed.length} passed, ${failed.length} failed; screenshots in ${SHOTS}`);
process.exit(failed.length ? 1 : 0);
