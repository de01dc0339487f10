// DIMSE peers (the `admin` permission): the AE titles that may associate with the archive,
// what each may do, and the sources it stores into / queries (GET/PUT/DELETE {api}/peers).
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

const FLAGS = [
  ['may_store', 'May store (C-STORE)'], ['may_query', 'May query and retrieve'],
  ['may_be_move_destination', 'C-MOVE destination'], ['staged', 'Staged (held until committed)'],
];
const list = values => (values && values.length ? values.join(', ') : 'all');

export async function render(main) {
  const [found, sources] = await Promise.all([api('/peers'), api('/sources')]);
  const message = status();
  const remove = peer => h('button', { type: 'button', class: 'delete', onclick: async () => {
    try {
      await api(`/peers/${encodeURIComponent(peer.ae_title)}`, { method: 'DELETE' });
      await render(main);
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, 'Remove');
  const title = h('input', { name: 'ae_title', required: true, maxlength: 16 });
  const host = h('input', { name: 'host', required: true });
  const port = h('input', { name: 'port', type: 'number', min: 1, max: 65535, required: true });
  const uploadSource = h('select', { name: 'upload_source' }, h('option', { value: '' }, '(default)'),
    ...sources.map(s => h('option', { value: s.name }, s.name)));
  const description = h('input', { name: 'description' });
  const flags = h('fieldset', { class: 'choices' }, h('legend', {}, 'May'),
    ...FLAGS.map(([name, label]) => h('label', {},
      h('input', { type: 'checkbox', name, checked: name !== 'staged' }), ` ${label} `)));
  const formMessage = status();
  const form = h('form', { id: 'new-peer', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    const body = { host: host.value.trim(), port: Number(port.value),
      description: description.value.trim(), upload_source: uploadSource.value || undefined };
    for (const [name] of FLAGS) body[name] = form.querySelector(`input[name=${name}]`).checked;
    try {
      await api(`/peers/${encodeURIComponent(title.value.trim())}`, { method: 'PUT', body });
      await render(main);
    } catch (error) { setStatus(formMessage, error.message, 'error'); }
  } }, field('AE title', title), field('Host', host), field('Port', port),
  field('Stores into source', uploadSource), field('Description', description), flags,
  h('button', { type: 'submit' }, 'Save peer'));
  main.replaceChildren(h('h1', {}, 'DIMSE peers'), found.length ? table([
    { label: 'AE title', get: p => p.ae_title },
    { label: 'Address', get: p => `${p.host}:${p.port}` },
    { label: 'May', get: p => FLAGS.filter(([name]) => p[name]).map(([, label]) => label).join(', ') },
    { label: 'Stores into', get: p => p.upload_source ?? 'default' },
    { label: 'Queries', get: p => list(p.query_sources) },
    { label: 'Description', get: p => p.description },
    { label: 'Actions', sort: false, get: remove },
  ], found, { sortable: true }) : status('No DIMSE peers.'), message,
  h('details', { class: 'card' }, h('summary', {}, 'Add or replace a peer'), form, formMessage));
}
