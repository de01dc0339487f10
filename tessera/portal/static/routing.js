// Routing (the `admin` permission): the rules with their backlog (pending, delivered, dead),
// dead letters sent again, a rule added or removed, and a rule's per-instance deliveries
// with "Send again" for a delivered or dead one ({api}/routes, docs/routing.md).
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';
import { FIRST_PAGE, pageOf, pageQuery, pager, statusFilter } from './paging.js';

const words = text => text.split(',').map(t => t.trim()).filter(Boolean);

function destination(rule) {
  const d = rule.destination ?? {};
  return d.kind === 'dimse' ? `DIMSE ${d.ae_title}@${d.host}:${d.port}` : `DICOMweb ${d.url ?? ''}`;
}

export async function render(main) {
  const found = await api('/routes');
  const message = status();
  const act = (label, cls, run) => h('button', { type: 'button', class: cls, onclick: async () => {
    try {
      const answer = await run();
      await render(main);
      if (answer && answer.replayed !== undefined) {
        main.querySelector('#routes-message')?.replaceWith(
          status(`${answer.replayed} dead deliveries sent again.`, 'ok'));
      }
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, label);
  message.id = 'routes-message';
  const path = rule => `/routes/${encodeURIComponent(rule.name)}`;
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+' });
  const trigger = h('select', { name: 'trigger' }, h('option', { value: 'instance' }, 'each instance'),
    h('option', { value: 'study_complete' }, 'study complete'));
  const sources = h('input', { name: 'sources', placeholder: 'all, or ClinicA, ClinicB' });
  const modalities = h('input', { name: 'modalities', placeholder: 'all, or CT, MR' });
  const kind = h('select', { name: 'kind' }, h('option', { value: 'dicomweb' }, 'DICOMweb'),
    h('option', { value: 'dimse' }, 'DIMSE'));
  const url = h('input', { name: 'url', type: 'url', placeholder: 'https://pacs.example.org/dicomweb' });
  const aeTitle = h('input', { name: 'ae_title', maxlength: 16 });
  const host = h('input', { name: 'host' });
  const port = h('input', { name: 'port', type: 'number', min: 1, max: 65535 });
  const formMessage = status();
  const form = h('form', { id: 'new-route', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    const target = kind.value === 'dimse'
      ? { kind: 'dimse', ae_title: aeTitle.value.trim(), host: host.value.trim(),
        port: Number(port.value) || undefined }
      : { kind: 'dicomweb', url: url.value.trim() };
    try {
      await api('/routes', { method: 'POST', body: { name: name.value.trim(), trigger: trigger.value,
        conditions: { sources: words(sources.value), modalities: words(modalities.value) },
        destination: target } });
      await render(main);
    } catch (error) { setStatus(formMessage, error.message, 'error'); }
  } }, field('Name', name), field('When', trigger), field('Sources', sources),
  field('Modalities', modalities), field('Destination', kind), field('DICOMweb root', url),
  field('AE title', aeTitle), field('Host', host), field('Port', port),
  h('button', { type: 'submit' }, 'Add rule'));
  main.replaceChildren(h('h1', {}, 'Routing'), found.length ? table([
    { label: 'Rule', get: r => r.name },
    { label: 'When', get: r => r.trigger.replace('_', ' ') },
    { label: 'Sources', get: r => r.conditions.sources.join(', ') || 'all' },
    { label: 'Modalities', get: r => r.conditions.modalities.join(', ') || 'all' },
    { label: 'To', get: destination },
    { label: 'Pending', get: r => r.backlog.pending, key: r => r.backlog.pending },
    { label: 'Delivered', get: r => r.backlog.delivered, key: r => r.backlog.delivered },
    { label: 'Dead', get: r => r.backlog.dead, key: r => r.backlog.dead },
    { label: 'Actions', sort: false, get: r => h('span', {},
      h('button', { type: 'button', class: 'deliveries', dataset: { rule: r.name },
        onclick: () => drawDeliveries(deliveries, r.name) }, 'Deliveries'),
      ' ', r.backlog.dead ? act('Send dead again', 'replay', () => api(`${path(r)}/replay`, { method: 'POST' })) : '',
      ' ', act('Remove', 'delete', () => api(path(r), { method: 'DELETE' }))) },
  ], found, { sortable: true }) : status('No routing rules.'), message, deliveries,
  h('details', { class: 'card' }, h('summary', {}, 'Add a rule'), form, formMessage));
}

// GET {api}/routes/{name}/deliveries?status=&limit=&before=: each instance's state (which
// instance, where, status, attempts, last error), newest first, paged back by the last id
// shown; POST .../deliveries/{id}/send sends a delivered or dead one again (the server
// refuses a pending one, 409).
const deliveries = h('section', { id: 'deliveries' });

async function drawDeliveries(box, name, view = FIRST_PAGE) {
  const path = `/routes/${encodeURIComponent(name)}`;
  const message = status();
  message.id = 'deliveries-message';
  const redraw = changes => drawDeliveries(box, name, { ...view, ...changes });
  let page;
  try {
    page = pageOf(await api(`${path}/deliveries?${pageQuery(view)}`), view);
  } catch (error) {
    box.replaceChildren(status(error.message, 'error'));
    return message;
  }
  const found = page.rows;
  const rule = await api(path);
  const sendAgain = d => (d.status === 'pending' ? '' : h('button', { type: 'button', class: 'resend',
    onclick: async event => {
      event.currentTarget.disabled = true;
      try {
        await api(`${path}/deliveries/${d.id}/send`, { method: 'POST' });
        const shown = await redraw({});
        setStatus(shown, `Instance ${d.sop_instance_uid} queued to be sent again.`, 'ok');
      } catch (error) { setStatus(message, error.message, 'error'); }
    } }, 'Send again'));
  // POST {api}/routes/{name}/send {"study_instance_uid"}: every instance of the study the
  // rule (and the user) may send, queued again.
  const studyAgain = d => h('button', { type: 'button', class: 'resend-study', onclick: async event => {
    event.currentTarget.disabled = true;
    try {
      const answer = await api(`${path}/send`, { method: 'POST',
        body: { study_instance_uid: d.study_instance_uid } });
      const shown = await redraw({});
      setStatus(shown, `${answer.queued} instances of the study queued to be sent again.`, 'ok');
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, 'Send study again');
  box.replaceChildren(h('h2', {}, `Deliveries of ${name}`), statusFilter(view, redraw),
    found.length ? table([
      { label: 'Study', long: true, get: d => h('a', {
        href: `#/study/${encodeURIComponent(d.study_instance_uid)}` }, d.study_instance_uid) },
      { label: 'Instance', long: true, get: d => d.sop_instance_uid },
      { label: 'To', long: true, get: () => destination(rule) },
      { label: 'Status', get: d => d.status },
      { label: 'Attempts', get: d => d.attempts, key: d => d.attempts },
      { label: 'When', get: d => (d.delivered_at ?? d.next_attempt_at ?? '').slice(0, 19).replace('T', ' ') },
      { label: 'Last error', get: d => d.last_error },
      { label: 'Action', sort: false, get: d => h('span', {}, sendAgain(d), ' ', studyAgain(d)) },
    ], found, { sortable: true }) : status('No deliveries.'),
    pager(view, found, page.more, redraw),
    message);
  return message;
}
