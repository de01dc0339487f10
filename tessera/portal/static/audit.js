// The audit log (the `admin` permission): newest first, filtered by action and principal.
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

export async function render(main) {
  const action = h('input', { name: 'action', placeholder: 'login, upload, admin.*' });
  const principal = h('input', { name: 'principal' });
  const message = status();
  const results = h('div', { id: 'audit' });
  async function search() {
    const query = new URLSearchParams({ limit: '200' });
    if (action.value.trim()) query.set('action', action.value.trim());
    if (principal.value.trim()) query.set('principal', principal.value.trim());
    try {
      const events = await api(`/audit?${query}`);
      setStatus(message, events.length ? '' : 'No events.');
      results.replaceChildren(table([
        { label: 'When', get: e => e.at.slice(0, 19).replace('T', ' '), key: e => e.at },
        { label: 'Who', get: e => e.principal },
        { label: 'Action', get: e => e.action },
        { label: 'Outcome', get: e => e.outcome },
        { label: 'Target', get: e => e.target },
        { label: 'From', get: e => e.remote_addr },
      ], events, { sortable: true }));
    } catch (error) { setStatus(message, error.message, 'error'); }
  }
  const form = h('form', { class: 'search', onsubmit: e => { e.preventDefault(); search(); } },
    field('Action', action), field('Principal', principal), h('button', { type: 'submit' }, 'Filter'));
  main.replaceChildren(h('h1', {}, 'Audit log'), form, message, results);
  await search();
}
