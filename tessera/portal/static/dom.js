// Building the page from data: text always goes in as text (never as HTML).
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

// A message line (role=status: screen readers announce it).
export function status(text = '', kind = '') {
  return h('p', { class: `status ${kind}`, role: 'status' }, text);
}

export function setStatus(element, text, kind = '') {
  element.textContent = text;
  element.className = `status ${kind}`;
}

export function table(columns, rows, { sortable = false, sorted = null, onSort = null } = {}) {
  // columns: [{ label, get: row => text|Node, key: row => sortable value, long: a UID or
  // address that may wrap anywhere }]
  // With `onSort` the server sorts (across pages): only columns with an `orderby` key get a
  // sort button, a click calls onSort(orderby), and `sorted` ({ orderby, ascending }) is the
  // order the rows came in.
  if (onSort) return serverSortedTable(columns, rows, sorted, onSort);
  let sortIndex = -1;
  let ascending = true;
  const body = h('tbody');
  const headRow = h('tr');
  const draw = () => {
    const sorted = [...rows];
    if (sortIndex >= 0) {
      const key = columns[sortIndex].key ?? columns[sortIndex].get;
      sorted.sort((a, b) => {
        const x = key(a), y = key(b);
        const order = typeof x === 'number' && typeof y === 'number'
          ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
    }
    body.replaceChildren(...sorted.map(row => h('tr', {},
      ...columns.map(column => h('td', { 'data-label': column.label, class: column.long ? 'long' : null },
        column.get(row))))));
  };
  columns.forEach((column, index) => {
    if (!sortable || column.sort === false) {
      headRow.append(h('th', { scope: 'col' }, column.label));
      return;
    }
    const button = h('button', { type: 'button', class: 'sort', onclick: () => {
      ascending = sortIndex === index ? !ascending : true;
      sortIndex = index;
      headRow.querySelectorAll('th').forEach(th => th.removeAttribute('aria-sort'));
      button.parentElement.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      draw();
    } }, column.label);
    headRow.append(h('th', { scope: 'col' }, button));
  });
  draw();
  return h('table', {}, h('thead', {}, headRow), body);
}

function serverSortedTable(columns, rows, sorted, onSort) {
  const headRow = h('tr', {}, ...columns.map(column => {
    if (!column.orderby) return h('th', { scope: 'col' }, column.label);
    const attributes = { scope: 'col' };
    if (sorted?.orderby === column.orderby) {
      attributes['aria-sort'] = sorted.ascending ? 'ascending' : 'descending';
    }
    return h('th', attributes, h('button', { type: 'button', class: 'sort',
      onclick: () => onSort(column.orderby) }, column.label));
  }));
  const body = h('tbody', {}, ...rows.map(row => h('tr', {},
    ...columns.map(column => h('td', { 'data-label': column.label }, column.get(row))))));
  return h('table', {}, h('thead', {}, headRow), body);
}
