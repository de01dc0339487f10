// Report templates (`read`: shipped and the tenant's; `admin`: add or replace one as JSON,
// PUT {api}/report-templates/{name}, docs/reports.md). The server validates the document.
import { api, session } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

export async function render(main) {
  const found = await api('/report-templates');
  main.replaceChildren(h('h1', {}, 'Report templates'), table([
    { label: 'Name', get: t => t.name },
    { label: 'Title', get: t => t.title ?? '' },
    { label: 'Fields', get: t => (t.fields ?? []).map(f => f.label || f.name).join(', ') },
    { label: 'Kind', get: t => (t.builtin ? 'shipped' : 'this account') },
  ], found, { sortable: true }));
  if (!session.can('admin')) return;
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+' });
  const document = h('textarea', { name: 'document', rows: 10, required: true,
    placeholder: '{"title": "Thyroid ultrasound", "fields": [{"name": "impression", "type": "text"}]}' });
  const message = status();
  const form = h('form', { id: 'new-template', onsubmit: async event => {
    event.preventDefault();
    let body;
    try {
      body = JSON.parse(document.value);
      if (body && typeof body === 'object' && !Array.isArray(body) && !body.name) body.name = name.value.trim();
    } catch (error) {
      setStatus(message, `Not JSON: ${error.message}`, 'error');
      return;
    }
    try {
      await api(`/report-templates/${encodeURIComponent(name.value.trim())}`, { method: 'PUT', body });
      await render(main);
      main.append(status(`Template ${name.value.trim()} saved.`, 'ok'));
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('Name', name), field('Template (JSON)', document),
  h('button', { type: 'submit' }, 'Save template'), message);
  main.append(h('details', { class: 'card' }, h('summary', {}, 'Add or replace a template'), form));
}
