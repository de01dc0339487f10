// Upload: files or a whole folder, chosen or dropped, sent with STOW-RS (multipart/related
// built here) in batches, with a progress bar (files, MB, rate). "Upload later" opens an
// upload session ({api}/upload-sessions) and stores into it; the sessions list commits or
// discards. Only for callers with the `upload` permission (the server checks it too).
import { api, session, dicomwebRoot, onUnauthorized, sourceInput } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

const BATCH_BYTES = 32 * 1024 * 1024;
const BATCH_FILES = 100;
const MB = 1024 * 1024;

export async function render(main) {
  let files = [];
  const chosen = status('No files chosen.');
  const pick = h('input', { type: 'file', multiple: true, id: 'files', onchange: e => add(e.target.files) });
  const folder = h('input', { type: 'file', multiple: true, webkitdirectory: true, id: 'folder',
    onchange: e => add(e.target.files) });
  const drop = h('div', { class: 'drop', id: 'drop', tabindex: '0' }, 'Drop DICOM files or folders here');
  drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async e => {
    e.preventDefault();
    drop.classList.remove('over');
    add(await droppedFiles(e.dataTransfer));
  });
  function add(list) {
    files = files.concat([...list].filter(f => f.size > 0));
    const bytes = files.reduce((n, f) => n + f.size, 0);
    setStatus(chosen, `${files.length} files, ${(bytes / MB).toFixed(1)} MB chosen.`);
  }

  const [source, sourceList] = sourceInput(h);
  const order = h('input', { name: 'order', inputmode: 'numeric', placeholder: 'order number' });
  const later = h('input', { type: 'checkbox', name: 'later' });
  const description = h('input', { name: 'description' });
  const bar = h('progress', { id: 'progress', max: 1, value: 0 });
  const progress = status();
  const result = status();
  const sessionsBox = h('div', { id: 'sessions' });

  const form = h('form', { id: 'upload', onsubmit: async event => {
    event.preventDefault();
    if (!files.length) {
      setStatus(result, 'Choose files first.', 'error');
      return;
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      let root = `${dicomwebRoot()}/studies`;
      const params = new URLSearchParams();
      if (source.value.trim()) params.set('source', source.value.trim());
      if (later.checked) {
        const opened = await api('/upload-sessions', { method: 'POST', body: {
          description: description.value.trim(), source: source.value.trim() || undefined } });
        root = `${dicomwebRoot()}/upload-sessions/${encodeURIComponent(opened.id)}/studies`;
        params.delete('source');
      } else if (order.value.trim()) {
        params.set('order', order.value.trim());
      }
      const url = params.size ? `${root}?${params}` : root;
      const totals = await send(url, files, (done, bytes, total, totalBytes, seconds) => {
        bar.max = totalBytes || 1;
        bar.value = bytes;
        const rate = seconds > 0 ? (bytes / MB / seconds).toFixed(1) : '0.0';
        setStatus(progress, `${done}/${total} files, ${(bytes / MB).toFixed(1)}/`
          + `${(totalBytes / MB).toFixed(1)} MB, ${rate} MB/s`);
      });
      setStatus(result, `Stored ${totals.stored} instances`
        + (totals.failed ? `, ${totals.failed} refused (${totals.reasons.join('; ')})` : '')
        + (later.checked ? ' in an upload session: commit it below to make it visible.' : '.'),
      totals.failed ? 'error' : 'ok');
      files = [];
      pick.value = '';
      folder.value = '';
      setStatus(chosen, 'No files chosen.');
      if (later.checked) await drawSessions(sessionsBox);
    } catch (error) {
      setStatus(result, error.message, 'error');
    } finally {
      button.disabled = false;
    }
  } },
  field('Files', pick), field('A folder', folder), drop, chosen,
  field('Source', source), sourceList, field('Attach to order (number)', order),
  h('div', { class: 'field' }, h('label', {}, later, ' Upload later (into a session to commit)')),
  field('Session description', description),
  h('button', { type: 'submit' }, 'Upload'), bar, progress, result);
  main.replaceChildren(h('h1', {}, 'Upload'), form, h('h2', {}, 'Upload sessions'), sessionsBox);
  await drawSessions(sessionsBox);
}

// Every file of a drop, folders walked (webkitGetAsEntry).
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map(i => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const out = [];
  const walk = async entry => {
    if (entry.isFile) out.push(await new Promise((ok, ko) => entry.file(ok, ko)));
    else {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, ko) => reader.readEntries(ok, ko));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return out;
}

function batches(files) {
  const out = [];
  let current = [];
  let size = 0;
  for (const file of files) {
    if (current.length && (size + file.size > BATCH_BYTES || current.length >= BATCH_FILES)) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(file);
    size += file.size;
  }
  if (current.length) out.push(current);
  return out;
}

// STOW-RS: one multipart/related request per batch; the parts are the files themselves
// (a Blob of strings and Files: nothing is read into memory here).
async function send(url, files, onProgress) {
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  const started = performance.now();
  const totals = { stored: 0, failed: 0, reasons: [] };
  let doneFiles = 0;
  let doneBytes = 0;
  for (const batch of batches(files)) {
    const boundary = `tessera-${crypto.randomUUID()}`;
    const parts = [];
    for (const file of batch) {
      parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, '\r\n');
    }
    parts.push(`--${boundary}--\r\n`);
    const body = new Blob(parts);
    const batchBytes = batch.reduce((n, f) => n + f.size, 0);
    const answer = await post(url, body, boundary, sent => {
      const share = body.size ? Math.min(1, sent / body.size) : 1;
      onProgress(doneFiles, doneBytes + share * batchBytes, files.length, totalBytes,
        (performance.now() - started) / 1000);
    });
    doneFiles += batch.length;
    doneBytes += batchBytes;
    onProgress(doneFiles, doneBytes, files.length, totalBytes, (performance.now() - started) / 1000);
    const stored = answer?.['00081199']?.Value ?? [];
    const failed = answer?.['00081198']?.Value ?? [];
    totals.stored += stored.length;
    totals.failed += failed.length;
    for (const item of failed) {
      const reason = item['00081197']?.Value?.[0];
      const text = `0x${Number(reason ?? 0).toString(16).toUpperCase()}`;
      if (!totals.reasons.includes(text)) totals.reasons.push(text);
    }
    const unread = batch.length - stored.length - failed.length;
    if (unread > 0) {
      totals.failed += unread;
      if (!totals.reasons.includes('not DICOM')) totals.reasons.push('not DICOM');
    }
  }
  return totals;
}

// XMLHttpRequest, for its upload progress events (fetch has none).
function post(url, body, boundary, onSent) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    if (session.token) xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    xhr.setRequestHeader('Accept', 'application/dicom+json');
    xhr.setRequestHeader('Content-Type',
      `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.upload.onprogress = e => onSent(e.loaded);
    xhr.onerror = () => reject(new Error('the upload failed (network)'));
    xhr.onload = () => {
      let answer = null;
      try { answer = JSON.parse(xhr.responseText || 'null'); } catch { /* empty */ }
      if (xhr.status === 401) onUnauthorized.forEach(f => f());
      // 200 all stored, 202 some refused, 409 all refused: the answer lists each instance.
      if ([200, 202, 409].includes(xhr.status) && answer && !answer.detail) resolve(answer);
      else reject(new Error(answer?.detail || `upload refused: HTTP ${xhr.status}`));
    };
    xhr.send(body);
  });
}

async function drawSessions(box) {
  const found = (await api('/upload-sessions')).filter(s => s.state === 'open');
  if (!found.length) {
    box.replaceChildren(status('No open upload sessions.'));
    return;
  }
  const message = status();
  const act = (id, verb) => async () => {
    setStatus(message, `${verb === 'commit' ? 'Committing' : 'Discarding'}…`);
    try {
      await api(`/upload-sessions/${encodeURIComponent(id)}/${verb}`, { method: 'POST' });
      await drawSessions(box);
    } catch (error) {
      setStatus(message, error.message, 'error');
    }
  };
  box.replaceChildren(table([
    { label: 'Created', get: s => s.created_at.slice(0, 16).replace('T', ' ') },
    { label: 'Description', get: s => s.description },
    { label: 'Expires', get: s => s.expires_at.slice(0, 10) },
    { label: 'Actions', get: s => h('span', {},
      h('button', { type: 'button', class: 'commit', onclick: act(s.id, 'commit') }, 'Commit'), ' ',
      h('button', { type: 'button', class: 'discard', onclick: act(s.id, 'discard') }, 'Discard')) },
  ], found), message);
}
