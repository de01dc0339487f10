// Webhooks (the `admin` permission): the subscriptions (turned off and on, removed), a form
// to add one, and a subscription's deliveries with "Send again" ({api}/webhooks,
// docs/events.md).
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';
import { FIRST_PAGE, pageOf, pageQuery, pager, statusFilter } from './paging.js';

export async function render(main) {
  const found = await api('/webhooks');
  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://…' });
  const types = h('input', { name: 'event_types', placeholder: '* or study.complete, report.signed' });
  const description = h('input', { name: 'description' });
  const message = status();
  const form = h('form', { id: 'new-webhook', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    const eventTypes = types.value.split(',').map(t => t.trim()).filter(Boolean);
    try {
      const created = await api('/webhooks', { method: 'POST', body: {
        url: url.value.trim(), description: description.value.trim(),
        event_types: eventTypes.length ? eventTypes : undefined } });
      await render(main);
      main.append(h('p', { class: 'card' }, 'Signing secret (shown only this once): ',
        h('code', {}, created.secret)));
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('URL', url), field('Event types', types), field('Description', description),
  h('button', { type: 'submit' }, 'Add webhook'));
  const act = (label, cls, run) => h('button', { type: 'button', class: cls, onclick: async () => {
    try {
      await run();
      await render(main);
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, label);
  const path = w => `/webhooks/${w.id}`;
  main.replaceChildren(h('h1', {}, 'Webhooks'), found.length ? table([
    { label: 'URL', long: true, get: w => w.url },
    { label: 'Events', get: w => w.event_types.join(', ') },
    { label: 'Sources', get: w => w.filters.sources.join(', ') || 'all' },
    { label: 'Description', get: w => w.description },
    { label: 'State', get: w => (w.enabled ? 'enabled' : 'disabled') },
    { label: 'Actions', get: w => h('span', {},
      h('button', { type: 'button', class: 'deliveries', dataset: { webhook: w.id },
        onclick: () => drawDeliveries(deliveries, w) }, 'Deliveries'), ' ',
      act(w.enabled ? 'Turn off' : 'Turn on', 'toggle',
        () => api(path(w), { method: 'PATCH', body: { enabled: !w.enabled } })), ' ',
      act('Remove', 'delete', () => api(path(w), { method: 'DELETE' }))) },
  ], found) : status('No webhooks.'), message, deliveries,
  h('details', { class: 'card' }, h('summary', {}, 'Add a webhook'), form));
}

// GET {api}/webhooks/{id}/deliveries?status=&limit=&before=: each change sent (or to send),
// newest first, paged back by the last id shown; POST {api}/webhook-deliveries/{id}/replay
// sends one again with a fresh retry window.
const deliveries = h('section', { id: 'webhook-deliveries' });

async function drawDeliveries(box, webhook, view = FIRST_PAGE) {
  const message = status();
  message.id = 'webhook-deliveries-message';
  const redraw = changes => drawDeliveries(box, webhook, { ...view, ...changes });
  let page;
  try {
    page = pageOf(await api(`/webhooks/${webhook.id}/deliveries?${pageQuery(view)}`), view);
  } catch (error) {
    box.replaceChildren(status(error.message, 'error'));
    return message;
  }
  const found = page.rows;
  const sendAgain = d => h('button', { type: 'button', class: 'replay', onclick: async event => {
    event.currentTarget.disabled = true;
    try {
      await api(`/webhook-deliveries/${d.id}/replay`, { method: 'POST' });
      const shown = await redraw({});
      setStatus(shown, `Delivery ${d.id} queued to be sent again.`, 'ok');
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, 'Send again');
  box.replaceChildren(h('h2', {}, `Deliveries to ${webhook.url}`), statusFilter(view, redraw),
    found.length ? table([
      { label: 'Event', get: d => d.type },
      { label: 'Status', get: d => d.status },
      { label: 'Attempts', get: d => d.attempts, key: d => d.attempts },
      { label: 'When', get: d => (d.delivered_at ?? d.next_attempt_at ?? d.created_at ?? '')
        .slice(0, 19).replace('T', ' ') },
      { label: 'Last answer', long: true, get: d => [d.last_status_code, d.last_error]
        .filter(Boolean).join(' ') },
      { label: 'Action', sort: false, get: sendAgain },
    ], found, { sortable: true }) : status('No deliveries.'),
    pager(view, found, page.more, redraw),
    message);
  return message;
}
