// Drives the prebuilt OHIF v3 viewer in Debian's headless Chromium (playwright-core) against a
// DICOMweb server, and reports what a person would have seen, as JSON on stdout:
//   node drive.mjs SPEC.json
// SPEC: {
//   viewerUrl:    "http://127.0.0.1:PORT/viewer/"   (OHIF's study list)
//   dicomwebRoot: "http://127.0.0.1:PORT/dicomweb"  (requests under it are checked)
//   artifacts:    folder for screenshots
//   studies: [{ studyInstanceUID, seriesInstanceUID (optional: open only that series),
//               kind: "image" | "cine" | "pdf", name: "for file names" }]
//   chromium:     "/usr/bin/chromium" (optional), timeoutMs (optional, per wait)
// }
// The result lists the study list's patient names, per study whether pixels were rendered
// (and for a cine which frames were shown while playing), and every DICOMweb request that
// failed (HTTP status >= 400, or refused by the browser, e.g. by CORS).
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = spec.timeoutMs ?? 30000;
fs.mkdirSync(spec.artifacts, { recursive: true });

const result = {
  studyList: [],
  studies: [],
  dicomwebRequests: 0,
  failedRequests: [],
  corsErrors: [],
  pageErrors: [],
  assetFailures: [],
  requestKinds: {},
};

// What a DICOMweb request was for, from its path: search, metadata, frames, thumbnail...
function requestKind(url) {
  const path = new URL(url).pathname;
  const match = path.match(/\/(metadata|frames\/[^/]+|rendered|thumbnail|bulkdata\/[^/]+)$/);
  if (match) return match[1].split('/')[0];
  return /\/(studies|series|instances)$/.test(path) ? 'search' : 'instances';
}
// Status and media type of every DICOMweb response, by URL (the PDF check reads it).
const responses = new Map();

const browser = await chromium.launch({
  executablePath: spec.chromium ?? '/usr/bin/chromium',
  // Debian's Chromium as root on a machine with no GPU and no network beyond this host.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', ...(spec.extraArgs ?? [])],
});

function watch(page) {
  page.on('response', response => {
    const url = response.url();
    if (!url.startsWith(spec.dicomwebRoot)) {
      // The viewer's own files (bundles, wasm decoders, fonts) must all load.
      if (url.startsWith(new URL(spec.viewerUrl).origin) && response.status() >= 400) {
        result.assetFailures.push({ url, status: response.status() });
      }
      return;
    }
    result.dicomwebRequests += 1;
    const kind = requestKind(url);
    result.requestKinds[kind] = (result.requestKinds[kind] ?? 0) + 1;
    responses.set(url, {
      status: response.status(),
      contentType: response.headers()['content-type'] ?? '',
      accept: response.request().headers()['accept'] ?? '',
    });
    if (response.status() >= 400) {
      result.failedRequests.push({
        method: response.request().method(), url, status: response.status(),
      });
    }
  });
  page.on('requestfailed', request => {
    const url = request.url();
    const error = request.failure()?.errorText ?? '';
    // Leaving a page aborts its prefetches; that is the browser's doing, not the server's.
    if (!url.startsWith(spec.dicomwebRoot) || error === 'net::ERR_ABORTED') return;
    result.failedRequests.push({ method: request.method(), url, status: 0, error });
  });
  page.on('console', message => {
    if (message.type() === 'error' && /CORS|Access-Control/i.test(message.text())) {
      result.corsErrors.push(message.text().slice(0, 500));
    }
  });
  page.on('pageerror', error => result.pageErrors.push(String(error).slice(0, 500)));
}

async function dismissDialogs(page) {
  // First-visit tour and the "investigational use" banner cover the viewport.
  for (const selector of ['text=Skip all', '[data-cy=confirm-and-hide-button]']) {
    const element = page.locator(selector);
    if (await element.count()) await element.first().click({ timeout: 2000 }).catch(() => {});
  }
}

// Statistics of the pixels OHIF drew in the first cornerstone canvas (a 2D canvas that
// cornerstone3D copies each rendered frame into), or null before there is one.
async function canvasPixels(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('canvas.cornerstone-canvas');
    if (!canvas || !canvas.width || !canvas.height) return null;
    const context = canvas.getContext('2d', { willReadFrequently: true });
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let min = 255, max = 0, hash = 0, colourful = 0;
    const values = new Set();
    for (let i = 0; i < data.length; i += 4) {
      const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
      // A colour photo shows as colour, a greyscale image (CT) never does.
      const spread = Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]);
      if (spread > 32) colourful += 1;
      if (grey < min) min = grey;
      if (grey > max) max = grey;
      if (values.size < 4096) values.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      if (i % 388 === 0) hash = (hash * 31 + data[i] + data[i + 1] * 7 + data[i + 2] * 13) | 0;
    }
    return { width: canvas.width, height: canvas.height, min, max, distinct: values.size, hash,
      colourful: colourful / (data.length / 4) };
  });
}

async function waitForImage(page) {
  const deadline = Date.now() + timeout;
  let pixels = null;
  while (Date.now() < deadline) {
    pixels = await canvasPixels(page);
    // Not uniform: a real image, not the black viewport OHIF shows before (or instead of) it.
    if (pixels && pixels.max - pixels.min > 16 && pixels.distinct > 8) return pixels;
    await page.waitForTimeout(250);
  }
  return pixels;
}

async function frameLabel(page) {
  const overlay = page.locator('[data-cy=viewport-overlay-bottom-right]').first();
  const text = (await overlay.count()) ? await overlay.innerText().catch(() => '') : '';
  const match = text.match(/\((\d+)\s*\/\s*(\d+)\)/);
  return match ? { index: Number(match[1]), total: Number(match[2]) } : null;
}

async function playCine(page) {
  const play = page.locator('[data-cy=cine-player-play-pause]').first();
  await play.waitFor({ timeout });
  // Let every frame arrive first, so the frames seen below are the cine's, not the network's.
  const deadline = Date.now() + timeout;
  let label = await frameLabel(page);
  while (Date.now() < deadline && !label) {
    await page.waitForTimeout(250);
    label = await frameLabel(page);
  }
  await play.click();
  const frames = new Set();
  const hashes = new Set();
  for (let i = 0; i < 12; i++) {
    await page.waitForTimeout(200);
    const shown = await frameLabel(page);
    if (shown) frames.add(shown.index);
    const pixels = await canvasPixels(page);
    if (pixels) hashes.add(pixels.hash);
  }
  await play.click().catch(() => {});
  return { framesShown: [...frames].sort((a, b) => a - b), distinctImages: hashes.size,
    totalFrames: label?.total ?? null };
}

async function openPdf(page) {
  // OHIF's PDF viewport embeds the document it fetched from the server.
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const found = await page.evaluate(() => {
      const element = document.querySelector('iframe, object[type="application/pdf"], embed');
      return element ? (element.getAttribute('src') || element.getAttribute('data') || '') : null;
    });
    if (found && found.startsWith('blob:')) {
      // OHIF fetched the document itself (bulk data) and embeds it as a blob: read it back.
      const blob = await page.evaluate(async url => {
        const response = await fetch(url);
        const bytes = new Uint8Array(await response.arrayBuffer());
        return { type: response.headers.get('content-type') ?? '', head: String.fromCharCode(...bytes.slice(0, 8)), size: bytes.length };
      }, found);
      return { embedded: found, embeddedResponse: { status: 200, contentType: blob.type, head: blob.head, size: blob.size } };
    }
    if (found) {
      const url = new URL(found, page.url()).toString();
      // The browser fetches the embedded document itself; wait for its answer.
      while (Date.now() < deadline && !responses.has(url)) await page.waitForTimeout(100);
      return { embedded: url, embeddedResponse: responses.get(url) ?? null };
    }
    await page.waitForTimeout(250);
  }
  return { embedded: null, embeddedResponse: null };
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  watch(page);

  // The study list: every study, with its patient's name.
  await page.goto(spec.viewerUrl, { timeout });
  const rows = page.locator('table tbody tr:not(:has(input))');
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline && (await rows.count()) < spec.studies.length) {
    await page.waitForTimeout(250);
  }
  await dismissDialogs(page);
  result.studyList = await rows.evaluateAll(trs => trs.map(tr => ({
    patientName: tr.querySelector('td')?.textContent?.trim() ?? '',
    cells: [...tr.querySelectorAll('td')].map(td => td.textContent.trim()),
  })));
  await page.screenshot({ path: path.join(spec.artifacts, 'study-list.png') });

  // Each study in the viewer, opened as the study list's launch button does.
  for (const study of spec.studies) {
    const started = Date.now();
    const url = new URL('viewer', spec.viewerUrl);
    url.searchParams.set('StudyInstanceUIDs', study.studyInstanceUID);
    if (study.seriesInstanceUID) url.searchParams.set('SeriesInstanceUIDs', study.seriesInstanceUID);
    await page.goto(url.toString(), { timeout });
    await dismissDialogs(page);
    const entry = {
      studyInstanceUID: study.studyInstanceUID,
      seriesInstanceUID: study.seriesInstanceUID ?? null,
      kind: study.kind,
    };
    try {
      if (study.kind === 'pdf') {
        Object.assign(entry, await openPdf(page));
        // Give the browser's PDF viewer a moment to draw the page for the screenshot.
        await page.waitForTimeout(1500);
      } else {
        entry.pixels = await waitForImage(page);
        await dismissDialogs(page);
        if (study.kind === 'cine') entry.cine = await playCine(page);
      }
    } catch (error) {
      // Reported, not thrown: the other studies still get their check.
      entry.error = String(error).slice(0, 1000);
    }
    entry.seconds = (Date.now() - started) / 1000;
    const screenshot = path.join(spec.artifacts, `${study.name}.png`);
    await page.screenshot({ path: screenshot });
    entry.screenshot = screenshot;
    result.studies.push(entry);
  }
  await page.close();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
