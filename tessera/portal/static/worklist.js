// The study worklist: QIDO-RS search (with tessera's `source=`, `orderstatus=` and `orderby=`),
// paged with limit/offset, sorted by the server across pages (`orderby=`, docs/qido.md
// "Sorting": patient name, patient ID, date, accession; the default is newest first), each
// study linked to its page and, when a viewer is served, to the viewer;
// each row's priors (the same patient's other studies) one click away.
import { api, qido, session, value, dicomDate, sourceLabel } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';
import { STATUSES } from './orders.js';

const PAGE_SIZES = [10, 25, 50, 100];
const ISSUER = '00100021';
const INCLUDE = ['00081030', '00080061', '00201206', '00201208', '00100030', ISSUER,
  'OrderStatus'].join(',');

// The last search of this tab, so "back" from a study returns to it.
// `sort`: { orderby, ascending } or null (the server's default, newest first).
const state = { filters: {}, offset: 0, size: 25, sort: null };

// OHIF takes a bearer token from `?token=` (its Mode route), sends it with every DICOMweb
// request and removes it from the address bar. The token handed over is not the login token
// but a viewer token minted at the click (POST {api}/viewer-token): it reads only, within the
// user's source lock, for a few minutes. The viewer reads the default tenant's DICOMweb root
// only (its app-config.js): no link for other tenants, whose tokens it would send to the
// wrong root.
export function viewerLink(studyUid) {
  if (!session.config.viewer || session.tenant !== 'default') return null;
  const href = `${session.config.viewer}viewer?${new URLSearchParams({ StudyInstanceUIDs: studyUid })}`;
  return h('a', { href, class: 'viewer', onclick: async event => {
    if (!session.token) return; // anonymous quick start: nothing to hand over
    event.preventDefault();
    const link = event.currentTarget;
    link.setAttribute('aria-busy', 'true');
    try {
      const minted = await api('/viewer-token', { method: 'POST' });
      location.assign(`${href}&${new URLSearchParams({ token: minted.access_token })}`);
    } catch (error) {
      link.removeAttribute('aria-busy');
      link.replaceWith(h('span', { class: 'status error', role: 'status' },
        `Viewer: ${error.message}`));
    }
  } }, 'Open in viewer');
}

export async function render(main) {
  const inputs = {
    name: h('input', { name: 'name', type: 'search' }),
    id: h('input', { name: 'id', type: 'search' }),
    accession: h('input', { name: 'accession', type: 'search' }),
    from: h('input', { name: 'from', type: 'date' }),
    to: h('input', { name: 'to', type: 'date' }),
    modality: h('input', { name: 'modality', size: 6 }),
    source: h('input', { name: 'source', list: 'source-names', size: 12 }),
    orderStatus: h('select', { name: 'orderstatus' }, h('option', { value: '' }, 'any'),
      ...STATUSES.map(s => h('option', { value: s }, s))),
  };
  const pageSize = h('select', { name: 'size', onchange: () => {
    state.size = Number(pageSize.value);
    state.offset = 0;
    search();
  } }, ...PAGE_SIZES.map(n => h('option', { value: String(n) }, String(n))));
  pageSize.value = String(state.size);
  const sourceNames = h('datalist', { id: 'source-names' });
  knownSources().then(names => sourceNames.replaceChildren(
    ...names.map(name => h('option', { value: name, label: sourceLabel(name) }))));
  for (const [key, input] of Object.entries(inputs)) input.value = state.filters[key] ?? '';
  const message = status();
  const results = h('div', { id: 'results' });
  const pager = h('div', { class: 'pager' });

  let latest = 0; // only the newest search draws (sort clicks can overlap)
  async function search() {
    const mine = ++latest;
    const f = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()]));
    state.filters = f;
    const range = f.from || f.to
      ? `${f.from.replaceAll('-', '')}-${f.to.replaceAll('-', '')}` : '';
    setStatus(message, 'Searching…');
    results.dataset.state = 'searching';
    try {
      const studies = await qido('/studies', {
        PatientName: f.name, fuzzymatching: f.name ? 'true' : '', PatientID: f.id,
        AccessionNumber: f.accession, StudyDate: range,
        ModalitiesInStudy: f.modality.toUpperCase(), source: f.source, orderstatus: f.orderStatus, includefield: INCLUDE,
        orderby: state.sort ? `${state.sort.ascending ? '' : '-'}${state.sort.orderby}` : '',
        limit: state.size + 1, offset: state.offset,
      });
      if (mine !== latest) return;
      const more = studies.length > state.size;
      draw(studies.slice(0, state.size), more);
      setStatus(message, studies.length ? '' : 'No studies found.');
    } catch (error) {
      if (mine !== latest) return;
      setStatus(message, error.message, 'error');
    }
    results.dataset.state = 'done';
  }

  // A sortable column's click: ascending first, then the other way; back to the first page.
  function sortBy(orderby) {
    const again = state.sort?.orderby === orderby;
    state.sort = { orderby, ascending: again ? !state.sort.ascending : true };
    state.offset = 0;
    search();
  }

  function draw(studies, more) {
    const uid = s => value(s, 'StudyInstanceUID');
    results.replaceChildren(table([
      { label: 'Patient', get: s => value(s, 'PatientName'), orderby: 'PatientName' },
      { label: 'Patient ID', get: s => value(s, 'PatientID'), orderby: 'PatientID' },
      { label: 'Date', get: s => dicomDate(value(s, 'StudyDate')), orderby: 'StudyDate' },
      { label: 'Accession', get: s => value(s, 'AccessionNumber'), orderby: 'AccessionNumber' },
      { label: 'Modality', get: s => value(s, 'ModalitiesInStudy') },
      { label: 'Description', get: s => h('a', { href: `#/study/${encodeURIComponent(uid(s))}`,
        class: 'study' }, value(s, 'StudyDescription') || '(no description)') },
      { label: 'Order', get: s => value(s, 'OrderStatus') },
      { label: 'Images', get: s => value(s, 'NumberOfStudyRelatedInstances') },
      { label: 'Priors', get: priorsButton },
      { label: 'Viewer', get: s => viewerLink(uid(s)) ?? '' },
    ], studies, { sorted: state.sort, onSort: sortBy }));
    const first = studies.length ? state.offset + 1 : 0;
    pager.replaceChildren(
      h('button', { type: 'button', disabled: state.offset === 0, onclick: () => {
        state.offset = Math.max(0, state.offset - state.size); search();
      } }, 'Previous'),
      h('span', {}, `${first}–${state.offset + studies.length}`),
      h('button', { type: 'button', disabled: !more, onclick: () => {
        state.offset += state.size; search();
      } }, 'Next'),
      field('Rows per page', pageSize),
    );
  }

  const form = h('form', { class: 'search', role: 'search', onsubmit: event => {
    event.preventDefault();
    state.offset = 0;
    search();
  } },
  field('Patient name', inputs.name), field('Patient ID', inputs.id),
  field('Accession', inputs.accession), field('From', inputs.from), field('To', inputs.to),
  field('Modality', inputs.modality), field('Source', inputs.source), sourceNames,
  field('Order status', inputs.orderStatus),
  h('button', { type: 'submit' }, 'Search'));
  main.replaceChildren(h('h1', {}, 'Studies'), form, message, results, pager);
  await search();
}

// The source names to offer: the caller's own lock, or (an admin) the tenant's sources.
// Anyone may type a name: the server narrows within what the caller may see.
async function knownSources() {
  if (session.me?.sources) return session.me.sources;
  if (!session.can('admin')) return [];
  try {
    return (await api('/sources')).map(s => s.name);
  } catch {
    return [];
  }
}

// The same patient's other studies (QIDO-RS by Patient ID and its issuer: with linked
// matching the server adds the studies of linked identities, docs/identity.md), shown in the
// row when asked for.
function priorsButton(study) {
  const patientId = value(study, 'PatientID');
  if (!patientId) return '';
  const studyUid = value(study, 'StudyInstanceUID');
  const issuer = study[ISSUER]?.Value?.[0] ?? '';
  const box = h('div', { class: 'priors' });
  const button = h('button', { type: 'button', class: 'priors', 'aria-expanded': 'false',
    onclick: async () => {
      if (button.getAttribute('aria-expanded') === 'true') {
        button.setAttribute('aria-expanded', 'false');
        box.replaceChildren();
        return;
      }
      button.setAttribute('aria-expanded', 'true');
      box.replaceChildren(status('Loading…'));
      try {
        const found = await qido('/studies', { PatientID: patientId, IssuerOfPatientID: issuer,
          includefield: '00081030,00080061', limit: 50 });
        const others = found.filter(s => value(s, 'StudyInstanceUID') !== studyUid);
        box.replaceChildren(others.length ? h('ul', {}, ...others.map(s => h('li', {},
          h('a', { href: `#/study/${encodeURIComponent(value(s, 'StudyInstanceUID'))}` },
            [dicomDate(value(s, 'StudyDate')), value(s, 'ModalitiesInStudy'),
              value(s, 'StudyDescription') || '(no description)'].filter(Boolean).join(' · ')))))
          : status('No other studies.'));
      } catch (error) {
        box.replaceChildren(status(error.message, 'error'));
      }
    } }, 'Priors');
  return h('div', {}, button, box);
}
