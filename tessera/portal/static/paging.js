// A delivery list paged by key (`before` = the last id shown, newest first), with a status
// filter and rows per page: routing's and webhooks' deliveries ({api}/routes/{name}/deliveries,
// {api}/webhooks/{id}/deliveries).
import { h, field } from './dom.js';

const PAGE_SIZES = [10, 25, 50, 100];
const STATUSES = [['', 'all'], ['pending', 'pending'], ['delivered', 'delivered'], ['dead', 'dead']];

// view: { wanted: status filter, size: rows per page, older: the `before` ids of the pages
// left behind (empty: the newest page) }.
export const FIRST_PAGE = { wanted: '', size: 25, older: [] };

// The query of the view's page: one row more than shown, to learn whether there are older.
export function pageQuery({ wanted, size, older }) {
  const query = { status: wanted, limit: size + 1 };
  if (older.length) query.before = older.at(-1);
  return new URLSearchParams(query);
}

// The rows to show, and whether older ones exist.
export function pageOf(found, { size }) {
  return { rows: found.slice(0, size), more: found.length > size };
}

export function statusFilter({ wanted }, redraw) {
  const select = h('select', { name: 'status', onchange: () => redraw({ wanted: select.value, older: [] }) },
    ...STATUSES.map(([value, label]) => h('option', { value, selected: value === wanted }, label)));
  return field('Status', select);
}

// Newer / Older and the rows per page, under the table.
export function pager({ size, older }, rows, more, redraw) {
  const sizes = h('select', { name: 'size', onchange: () => redraw({ size: Number(sizes.value), older: [] }) },
    ...PAGE_SIZES.map(n => h('option', { value: String(n), selected: n === size }, String(n))));
  return h('div', { class: 'pager' },
    h('button', { type: 'button', class: 'newer', disabled: !older.length,
      onclick: () => redraw({ older: older.slice(0, -1) }) }, 'Newer'),
    h('button', { type: 'button', class: 'older', disabled: !more,
      onclick: () => redraw({ older: [...older, rows.at(-1).id] }) }, 'Older'),
    field('Rows per page', sizes));
}
