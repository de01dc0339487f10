// Webhooks (the `admin` permission): the subscriptions and a form to add one.
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

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
  main.replaceChildren(h('h1', {}, 'Webhooks'), found.length ? table([
    { label: 'URL', get: w => w.url },
    { label: 'Events', get: w => w.event_types.join(', ') },
    { label: 'Sources', get: w => w.filters.sources.join(', ') || 'all' },
    { label: 'Description', get: w => w.description },
    { label: 'State', get: w => (w.enabled ? 'enabled' : 'disabled') },
  ], found) : status('No webhooks.'),
  h('details', { class: 'card' }, h('summary', {}, 'Add a webhook'), form, message));
}
