// Drives the portal in Debian's headless Chromium (playwright-core, as conformance/ohif/drive.mjs
// does for OHIF) through scripted journeys, and reports what a person would have seen:
//   node drive.mjs SPEC.json      (run with the folder holding node_modules/playwright-core as cwd)
// SPEC: { baseUrl, artifacts, chromium?, timeoutMs?, journeys: [{ name, steps: [...] }] }
// Each journey runs in its own browser context (its own sessionStorage). Steps:
//   { goto: "/portal/" }                       { fill: SELECTOR, value }
//   { click: SELECTOR }                        { wait: SELECTOR, timeoutMs? }  (visible)
//   { select: SELECTOR, value }                (an <option> of a <select>)
//   { waitText: SELECTOR, text }               { files: SELECTOR, paths: [...] }
//   { texts: SELECTOR, as: NAME }              (innerText of every match, into the result)
//   { count: SELECTOR, as: NAME }              { screenshot: NAME }
//   { attr: SELECTOR, name: ATTRIBUTE, as: NAME }  { url: true, as: NAME }  (the address bar)
//   { storage: KEY, as: NAME }                 (sessionStorage value)
//   { images: SELECTOR, as: NAME }             (naturalWidth of each <img>: > 0 = drawn)
// The result: per journey the values asked for (`as`), the page errors, every failed
// request (status >= 400), the kinds of bearer token the viewer's DICOMweb requests carried
// (`viewerTokens`: the first 4 characters, e.g. "tsv_", or "none") and the error of a step
// that failed (the journey stops there).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { chromium } = require('playwright-core');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = spec.timeoutMs ?? 20000;
fs.mkdirSync(spec.artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: spec.chromium ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

async function run(journey) {
  const out = { name: journey.name, values: {}, pageErrors: [], failedRequests: [], error: null };
  const viewerTokens = new Set();
  const context = await browser.newContext({ viewport: journey.viewport ?? { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', e => out.pageErrors.push(String(e).slice(0, 500)));
  page.on('console', m => { if (m.type() === 'error') out.pageErrors.push(`console: ${m.text().slice(0, 300)} (${m.location().url})`); });
  page.on('request', async r => {
    if (!r.url().includes('/dicomweb/') || !page.url().includes('/viewer/')) return;
    try {
      const auth = (await r.allHeaders()).authorization;
      viewerTokens.add(auth ? (auth.split(' ')[1] ?? '').slice(0, 4) : 'none');
    } catch { /* the page closed */ }
  });
  page.on('response', r => {
    if (r.status() >= 400) out.failedRequests.push({ method: r.request().method(), url: r.url(), status: r.status() });
  });
  try {
    for (const step of journey.steps) {
      if (step.goto) await page.goto(new URL(step.goto, spec.baseUrl).href);
      else if (step.fill) await page.fill(step.fill, step.value);
      else if (step.select) await page.selectOption(step.select, step.value);
      else if (step.click) await page.click(step.click);
      else if (step.wait) await page.waitForSelector(step.wait, { state: 'visible', timeout: step.timeoutMs ?? timeout });
      else if (step.waitText) {
        await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)]
          .some(e => e.innerText.includes(t)), [step.waitText, step.text]);
      } else if (step.files) await page.setInputFiles(step.files, step.paths);
      else if (step.texts) out.values[step.as] = await page.$$eval(step.texts, es => es.map(e => e.innerText.trim()));
      else if (step.count) out.values[step.as] = await page.locator(step.count).count();
      else if (step.url) out.values[step.as] = page.url();
      else if (step.attr) out.values[step.as] = await page.$$eval(step.attr, (es, n) => es.map(e => e.getAttribute(n)), step.name);
      else if (step.storage) out.values[step.as] = await page.evaluate(k => sessionStorage.getItem(k), step.storage);
      else if (step.images) {
        await page.waitForFunction(s => [...document.querySelectorAll(s)].every(i => i.complete && (i.naturalWidth > 0 || i.alt === 'no thumbnail')), step.images);
        out.values[step.as] = await page.$$eval(step.images, es => es.map(e => e.naturalWidth));
      } else if (step.screenshot) {
        await page.screenshot({ path: path.join(spec.artifacts, `${journey.name}-${step.screenshot}.png`), fullPage: true });
      } else throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  } catch (error) {
    out.error = String(error).slice(0, 1500);
    await page.screenshot({ path: path.join(spec.artifacts, `${journey.name}-failed.png`), fullPage: true }).catch(() => {});
  }
  await context.close();
  out.viewerTokens = [...viewerTokens].sort();
  return out;
}

const results = [];
for (const journey of spec.journeys) results.push(await run(journey));
await browser.close();
console.log(JSON.stringify(results));
