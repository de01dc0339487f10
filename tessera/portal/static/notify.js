// "New study ready": the caller's change feed live ({api}/changes/stream?after=latest, docs/
// events.md; server-sent events read through fetch, since EventSource cannot send the bearer
// token), each study.complete shown as a toast linking the study and counted on the Worklist
// link. The stream carries only what the caller may see (the server's Scope).
import { apiRoot, session } from './api.js';
import { h } from './dom.js';

let running = null; // { controller, count }

export function startNotifications() {
  stopNotifications();
  if (!session.me || !session.can('read')) return;
  const state = { controller: new AbortController(), count: 0, last: null };
  running = state;
  listen(state);
}

export function stopNotifications() {
  if (running) running.controller.abort();
  running = null;
  document.getElementById('toasts')?.replaceChildren();
}

// The Worklist link's badge ("2 new"), redrawn with the navigation.
export function badge() {
  if (!running || !running.count) return null;
  return h('span', { class: 'badge', id: 'new-studies' }, `${running.count} new`);
}

export function clearBadge() {
  if (running) running.count = 0;
  document.getElementById('new-studies')?.remove();
}

async function listen(state) {
  while (running === state) {
    try {
      const after = state.last === null ? 'latest' : state.last;
      const response = await fetch(`${apiRoot()}/changes/stream?after=${after}&type=study.complete`, {
        headers: session.token ? { Authorization: `Bearer ${session.token}` } : {},
        signal: state.controller.signal,
      });
      if (response.status === 401 || response.status === 403) return; // signed out / no read
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      if (state.last === null) state.last = 'latest';
      await readEvents(response.body, state);
    } catch (error) {
      if (state.controller.signal.aborted) return;
    }
    await new Promise(resolve => setTimeout(resolve, 2000)); // reconnect
  }
}

async function readEvents(body, state) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = {};
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        fields[name] = (fields[name] ? `${fields[name]}\n` : '') + line.slice(colon + 1).replace(/^ /, '');
      }
      if (fields.id) state.last = fields.id;
      if (fields.event === 'study.complete' && fields.data) arrived(JSON.parse(fields.data), state);
    }
  }
}

function arrived(change, state) {
  state.count += 1;
  const link = document.querySelector('#nav a[data-page=worklist]');
  if (link) {
    document.getElementById('new-studies')?.remove();
    link.append(' ', badge());
  }
  const uid = change.study_instance_uid;
  const toasts = document.getElementById('toasts');
  const toast = h('div', { class: 'toast', role: 'status' },
    'New study ready', change.source ? ` (${change.source})` : '', ': ',
    h('a', { href: `#/study/${encodeURIComponent(uid)}` }, 'open it'), ' ',
    h('button', { type: 'button', 'aria-label': 'Dismiss', onclick: () => toast.remove() }, '×'));
  toasts.append(toast);
  while (toasts.children.length > 3) toasts.firstElementChild.remove();
}
