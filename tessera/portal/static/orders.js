// Orders: search by patient name (prefix of the last name), MRN (patient ID) or accession
// number and by status; create an order and cancel one (the `orders` permission only).
import { api, session } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

export const STATUSES = ['SCHEDULED', 'IN_PROGRESS', 'IMAGES_READY', 'REPORTED', 'FINAL',
  'CANCELLED', 'DISCONTINUED'];
const PRIORITIES = ['ROUTINE', 'STAT', 'HIGH', 'MEDIUM', 'LOW'];

export async function render(main) {
  const name = h('input', { name: 'patient_name', type: 'search' });
  const mrn = h('input', { name: 'patient_id', type: 'search' });
  const accession = h('input', { name: 'accession_number', type: 'search' });
  const state = h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
    ...STATUSES.map(s => h('option', { value: s }, s)));
  const message = status();
  const results = h('div', { id: 'orders' });

  async function search() {
    const query = new URLSearchParams({ limit: '100' });
    for (const input of [name, mrn, accession, state]) {
      if (input.value.trim()) query.set(input.name, input.value.trim());
    }
    setStatus(message, 'Searching…');
    results.dataset.state = 'searching'; // for tests and assistive tools: a search in flight
    try {
      const found = await api(`/orders?${query}`);
      setStatus(message, found.length ? '' : 'No orders found.');
      results.replaceChildren(table([
        { label: 'Order', get: o => o.id, key: o => o.id },
        { label: 'Patient', get: o => (o.patient_name ?? '').replaceAll('^', ' ') },
        { label: 'MRN', get: o => o.patient_id ?? '' },
        { label: 'Accession', get: o => o.accession_number },
        { label: 'Procedure', get: o => o.requested_procedure_description ?? '' },
        { label: 'Scheduled', get: o => o.scheduled_procedure_steps[0]?.start ?? '' },
        { label: 'Status', get: o => o.status },
        { label: 'Study', sort: false, get: o => (o.images_attached
          ? h('a', { href: `#/study/${encodeURIComponent(o.study_instance_uid)}` }, 'images') : '') },
        ...(session.can('orders') ? [{ label: 'Actions', sort: false, get: o => cancelButton(o, search, message) }] : []),
      ], found, { sortable: true }));
    } catch (error) {
      setStatus(message, error.message, 'error');
    }
    results.dataset.state = 'done';
  }

  const form = h('form', { class: 'search', role: 'search', onsubmit: e => { e.preventDefault(); search(); } },
    field('Last name', name), field('MRN (patient ID)', mrn), field('Accession', accession),
    field('Status', state), h('button', { type: 'submit' }, 'Search'));
  main.replaceChildren(h('h1', {}, 'Orders'),
    session.can('orders') ? createForm(search) : '', form, message, results);
  await search();
}

function cancelButton(order, refresh, message) {
  if (['CANCELLED', 'DISCONTINUED', 'FINAL'].includes(order.status)) return '';
  return h('button', { type: 'button', class: 'cancel', onclick: async () => {
    try {
      await api(`/orders/${order.id}/cancel`, { method: 'POST', body: { reason: 'cancelled in the portal' } });
      await refresh();
    } catch (error) {
      setStatus(message, error.message, 'error');
    }
  } }, 'Cancel');
}

function createForm(refresh) {
  const input = (name, attributes = {}) => h('input', { name, ...attributes });
  const fields = {
    patient_name: input('patient_name', { placeholder: 'DOE^JANE' }),
    patient_id: input('patient_id'),
    patient_birth_date: input('patient_birth_date', { type: 'date' }),
    patient_sex: h('select', { name: 'patient_sex' }, ...['', 'F', 'M', 'O'].map(s => h('option', { value: s }, s))),
    accession_number: input('accession_number', { required: true }),
    requested_procedure_description: input('requested_procedure_description'),
    referring_physician_name: input('referring_physician_name'),
    priority: h('select', { name: 'priority' }, ...PRIORITIES.map(s => h('option', { value: s }, s))),
    start: input('start', { type: 'datetime-local' }),
    modality: input('modality', { size: 6 }),
  };
  const message = status();
  const form = h('form', { id: 'new-order', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    const body = {};
    for (const [key, element] of Object.entries(fields)) {
      const text = element.value.trim();
      if (text && key !== 'start' && key !== 'modality') body[key] = text;
    }
    if (fields.start.value || fields.modality.value.trim()) {
      body.scheduled_procedure_steps = [{
        start: fields.start.value || undefined,
        modality: fields.modality.value.trim().toUpperCase() || undefined,
      }];
    }
    try {
      const order = await api('/orders', { method: 'POST', body });
      setStatus(message, `Order ${order.id} created (accession ${order.accession_number}).`, 'ok');
      form.reset();
      await refresh();
    } catch (error) {
      setStatus(message, error.message, 'error');
    }
  } },
  field('Patient name', fields.patient_name), field('MRN (patient ID)', fields.patient_id),
  field('Birth date', fields.patient_birth_date), field('Sex', fields.patient_sex),
  field('Accession', fields.accession_number),
  field('Procedure', fields.requested_procedure_description),
  field('Referring physician', fields.referring_physician_name), field('Priority', fields.priority),
  field('Scheduled', fields.start), field('Modality', fields.modality),
  h('button', { type: 'submit' }, 'Create order'), message);
  return h('details', { class: 'card' }, h('summary', {}, 'New order'), form);
}
