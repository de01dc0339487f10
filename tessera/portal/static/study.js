// One study: its patient and study values, series with thumbnails (WADO-RS /thumbnail
// fetched with the token, shown through blob: URLs), documents, reports and its order.
import {
  api, qido, imageUrl, request, dicomwebRoot, session, value, dicomDate, sourceInput,
} from './api.js';
import { h, field, status, setStatus, table } from './dom.js';
import { viewerLink } from './worklist.js';

const DOCUMENT_MODALITIES = new Set(['DOC', 'SR', 'XC', 'OT']);
// Series the server draws no thumbnail of (structured reports).
const NOT_DRAWN = new Set(['SR', 'KO', 'PR']);
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';

export async function render(main, { args }) {
  const studyUid = args[0] ?? '';
  const [study] = await qido('/studies', {
    StudyInstanceUID: studyUid, includefield: '00081030,00080061,00100030,00080090',
  });
  if (!study) {
    main.replaceChildren(h('h1', {}, 'Study'), status('No such study.', 'error'));
    return;
  }
  const studyPath = `/studies/${encodeURIComponent(studyUid)}`;
  const series = await qido(`${studyPath}/series`, { includefield: '0008103E' });
  series.sort((a, b) => Number(value(a, 'SeriesNumber')) - Number(value(b, 'SeriesNumber')));

  const facts = h('dl', { class: 'facts' }, ...[
    ['Patient', value(study, 'PatientName')], ['Patient ID', value(study, 'PatientID')],
    ['Birth date', dicomDate(value(study, 'PatientBirthDate'))],
    ['Study date', dicomDate(value(study, 'StudyDate'))],
    ['Accession', value(study, 'AccessionNumber')],
    ['Referring', value(study, 'ReferringPhysicianName')],
    ['Modalities', value(study, 'ModalitiesInStudy')],
  ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  // GET {api}/studies/{uid}/sources: the sources of its instances the user sees, described.
  const sources = h('dd', { id: 'study-sources' }, '…');
  facts.append(h('dt', {}, 'Source'), sources);
  api(`${studyPath}/sources`).then(
    found => sources.replaceChildren(...found.flatMap((s, i) => [
      i ? h('br') : '', h('strong', {}, s.name), s.description ? `: ${s.description}` : ''])),
    error => sources.replaceChildren(error.message));

  const grid = h('div', { class: 'series', id: 'series' }, ...series.map(s => {
    const image = h('img', { alt: `Series ${value(s, 'SeriesNumber')} thumbnail` });
    const figure = h('figure', {}, image);
    const path = `${studyPath}/series/${encodeURIComponent(value(s, 'SeriesInstanceUID'))}`;
    const none = () => image.replaceWith(h('div', { class: 'nothumb' }, value(s, 'Modality')));
    if (NOT_DRAWN.has(value(s, 'Modality'))) none();
    else imageUrl(`${path}/thumbnail`).then(url => { image.src = url; }, none);
    figure.append(h('figcaption', {},
      `${value(s, 'Modality')} #${value(s, 'SeriesNumber')} ${value(s, 'SeriesDescription')}`,
      h('br'), `${value(s, 'NumberOfSeriesRelatedInstances')} images`));
    return figure;
  }));

  const documents = h('div', { id: 'documents' }, status('Loading documents…'));
  const reports = h('div', { id: 'reports' }, status('Loading reports…'));
  const order = h('div', { id: 'order' }, status('Loading order…'));
  main.replaceChildren(
    h('h1', {}, value(study, 'StudyDescription') || 'Study'),
    h('p', {}, h('a', { href: '#/worklist' }, '← Worklist'), ' ', viewerLink(studyUid) ?? ''),
    facts, h('h2', {}, 'Series'), grid,
    h('h2', {}, 'Documents'), documents, h('h2', {}, 'Reports'), reports,
    h('h2', {}, 'Order'), order,
  );
  if (session.can('upload')) documents.after(documentForm(studyPath, () => render(main, { args })));
  if (session.can('report.write')) reports.after(reportForm(studyUid, () => drawReports(reports, studyUid)));
  await Promise.all([
    drawDocuments(documents, studyPath, series),
    drawReports(reports, studyUid),
    drawOrder(order, study),
  ]);
}

// POST {root}/studies/{uid}/documents (multipart/form-data): a PDF, text, image or video
// becomes a DICOM object of the study (docs/documents.md). The `upload` permission.
function documentForm(studyPath, done) {
  const file = h('input', { type: 'file', name: 'file', required: true });
  const title = h('input', { name: 'title', required: true, maxlength: 64 });
  const [source, sourceList] = sourceInput(h);
  const message = status();
  const form = h('form', { id: 'new-document', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    const body = new FormData();
    body.append('file', file.files[0]);
    body.append('title', title.value.trim());
    if (source.value.trim()) body.append('source', source.value.trim());
    setStatus(message, 'Storing…');
    try {
      await request(`${dicomwebRoot()}${studyPath}/documents`, { method: 'POST', body,
        accept: 'application/json' });
      await done();
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('File (PDF, text, JPEG, PNG, MP4)', file), field('Title', title),
  field('Source', source), sourceList, h('button', { type: 'submit' }, 'Add document'), message);
  return h('details', { class: 'card' }, h('summary', {}, 'Add a document'), form);
}

// POST {api}/studies/{uid}/reports: a DRAFT, free text in sections or the values of a template
// (GET {api}/report-templates; docs/reports.md). `report.write`. The page only lays out the
// template's fields; the server checks every value (types, choices, ranges) and its 400
// names the field.
function reportForm(studyUid, done) {
  const message = status();
  const template = h('select', { name: 'template' }, h('option', { value: '' }, 'Free text'));
  const body = h('div', { class: 'report-fields' });
  let templates = [];
  const freeText = () => [
    ['findings', h('textarea', { name: 'findings', rows: 4 }), 'Findings'],
    ['impression', h('textarea', { name: 'impression', rows: 2 }), 'Impression'],
  ];
  let inputs = freeText();
  const layOut = () => {
    const chosen = templates.find(t => t.name === template.value);
    inputs = chosen ? chosen.fields.map(f => [f.name, fieldInput(f), fieldLabel(f)]) : freeText();
    body.replaceChildren(...inputs.map(([, input, label]) => field(label, input)));
  };
  template.addEventListener('change', layOut);
  api('/report-templates').then(found => {
    templates = found;
    template.append(...found.map(t => h('option', { value: t.name }, t.title || t.name)));
  }, () => {}); // no templates offered: free text still works
  layOut();
  // novalidate: the server's answer (its 400 names the field) is the one shown, the same rule
  // for every client; min/max stay on the inputs as hints.
  const form = h('form', { id: 'new-report', novalidate: true, onsubmit: async event => {
    event.preventDefault();
    const given = filledValues(inputs);
    const report = template.value ? { template: template.value, values: given } : { sections: given };
    try {
      await api(`/studies/${encodeURIComponent(studyUid)}/reports`, { method: 'POST', body: report });
      form.reset();
      layOut();
      setStatus(message, 'Draft saved.', 'ok');
      await done();
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('Template', template), body,
  h('button', { type: 'submit' }, 'Save draft'), message);
  return h('details', { class: 'card' }, h('summary', {}, 'Write a report'), form);
}

// The report fields the user filled in (blank ones left out; numbers as numbers), for a new
// report and for a draft's edit alike.
function filledValues(inputs) {
  const given = {};
  for (const [name, input] of inputs) {
    const text = input.value.trim();
    if (!text) continue;
    given[name] = input.type === 'number' ? Number(text) : text;
  }
  return given;
}

function fieldLabel(f) {
  const unit = f.unit ? ` (${f.unit.meaning || f.unit.value})` : '';
  return `${f.label || f.name}${unit}${f.required ? ' *' : ''}`;
}

// One input per template field: text, number (with its range; the server checks it too), or
// a choice.
function fieldInput(f) {
  if (f.type === 'number') {
    return h('input', { name: f.name, type: 'number', step: 'any', min: f.min, max: f.max });
  }
  if (f.type === 'choice') {
    return h('select', { name: f.name }, h('option', { value: '' }, '—'),
      ...(f.choices ?? []).map(c => h('option', { value: c.value }, c.label || c.value)));
  }
  return h('textarea', { name: f.name, rows: 2 });
}

async function drawDocuments(box, studyPath, series) {
  const rows = [];
  for (const s of series.filter(x => DOCUMENT_MODALITIES.has(value(x, 'Modality')))) {
    const path = `${studyPath}/series/${encodeURIComponent(value(s, 'SeriesInstanceUID'))}`;
    const instances = await qido(`${path}/instances`, { includefield: '00420010' });
    for (const i of instances) rows.push({ series: s, instance: i, path });
  }
  if (!rows.length) {
    box.replaceChildren(status('No documents.'));
    return;
  }
  box.replaceChildren(table([
    { label: 'Title', get: r => value(r.instance, 'DocumentTitle')
      || value(r.series, 'SeriesDescription') || value(r.series, 'Modality') },
    { label: 'Kind', get: r => (value(r.instance, 'SOPClassUID') === ENCAPSULATED_PDF ? 'PDF'
      : value(r.series, 'Modality')) },
    { label: 'File', get: r => (value(r.instance, 'SOPClassUID') === ENCAPSULATED_PDF
      ? pdfButton(`${r.path}/instances/${encodeURIComponent(value(r.instance, 'SOPInstanceUID'))}`)
      : '') },
  ], rows));
}

function pdfButton(instancePath) {
  return h('button', { type: 'button', onclick: async event => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const response = await request(`${dicomwebRoot()}${instancePath}/bulkdata/00420011`,
        { accept: 'application/pdf' });
      const url = URL.createObjectURL(await response.blob());
      const link = h('a', { href: url, download: 'document.pdf' }, 'Save PDF');
      button.replaceWith(link);
      link.click();
    } catch (error) {
      button.textContent = error.message;
    }
  } }, 'Get PDF');
}

async function drawReports(box, studyUid) {
  try {
    const found = await api(`/studies/${encodeURIComponent(studyUid)}/reports`);
    if (!found.length) {
      box.replaceChildren(status('No reports.'));
      return;
    }
    box.replaceChildren(table([
      { label: 'Status', get: r => r.status },
      { label: 'Version', get: r => r.version },
      { label: 'Author', get: r => r.created_by },
      { label: 'Signed', get: r => (r.signed_by ? `${r.signed_by} ${r.signed_at.slice(0, 16).replace('T', ' ')}` : '') },
      { label: 'Text', get: r => summary(r.content) },
      ...(session.can('report.write') ? [{ label: 'Edit', get: r => editForm(r, box, studyUid) }] : []),
      ...(session.can('report.sign') ? [{ label: 'Sign', get: r => signButton(r, box, studyUid) }] : []),
      ...(session.can('report.sign') ? [{ label: 'Addendum', get: r => addendumForm(r, box, studyUid) }] : []),
    ], found));
  } catch (error) {
    box.replaceChildren(status(error.message, 'error'));
  }
}

function signButton(report, box, studyUid) {
  if (!['DRAFT', 'PRELIMINARY'].includes(report.status)) return '';
  return h('button', { type: 'button', class: 'sign', onclick: async event => {
    event.currentTarget.disabled = true;
    try {
      await api(`/studies/${encodeURIComponent(studyUid)}/reports/${report.id}/sign`, {
        method: 'POST', headers: { 'If-Match': `"${report.version}"` } });
      await drawReports(box, studyUid);
    } catch (error) {
      box.append(status(error.message, 'error'));
    }
  } }, 'Sign');
}

// PUT .../reports/{id} with If-Match: a new version of a DRAFT or PRELIMINARY report, its
// free-text sections or its template's values (docs/reports.md). `report.write`. A signed
// report gets no Edit (the server refuses it too, 409): it is amended by an addendum.
function editForm(report, box, studyUid) {
  if (!['DRAFT', 'PRELIMINARY'].includes(report.status)) return '';
  const content = report.content ?? {};
  const message = status();
  const fields = h('div', { class: 'report-fields' });
  let inputs = [];
  const fill = (pairs, given) => {
    inputs = pairs;
    for (const [name, input] of inputs) {
      if (given[name] !== undefined && given[name] !== null) input.value = String(given[name]);
    }
    fields.replaceChildren(...inputs.map(([, input, label]) => field(label, input)));
  };
  if (report.template) {
    api(`/report-templates/${encodeURIComponent(report.template)}`).then(t => fill(
      t.fields.map(f => [f.name, fieldInput(f), fieldLabel(f)]), content.values ?? {}),
    error => setStatus(message, error.message, 'error'));
  } else {
    const sections = content.sections ?? {};
    const names = [...new Set(['findings', 'impression', ...Object.keys(sections)])];
    fill(names.map(name => [name, h('textarea', { name, rows: name === 'findings' ? 4 : 2 }),
      name[0].toUpperCase() + name.slice(1)]), sections);
  }
  const form = h('form', { class: 'edit-report', novalidate: true, onsubmit: async event => {
    event.preventDefault();
    const given = filledValues(inputs);
    try {
      await api(`/studies/${encodeURIComponent(studyUid)}/reports/${report.id}`, {
        method: 'PUT', headers: { 'If-Match': `"${report.version}"` },
        body: report.template ? { values: given } : { sections: given } });
      await drawReports(box, studyUid);
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, fields, h('button', { type: 'submit' }, 'Save new version'), message);
  return h('details', { class: 'edit' }, h('summary', {}, 'Edit draft'), form);
}

// POST .../reports/{id}/addenda {"text"} with If-Match: a signed report becomes AMENDED and
// its SR and PDF are stored again (docs/reports.md). The `report.sign` permission.
function addendumForm(report, box, studyUid) {
  if (!['FINAL', 'AMENDED'].includes(report.status)) return '';
  const text = h('textarea', { name: 'addendum', rows: 3, required: true });
  const message = status();
  const form = h('form', { class: 'addendum', onsubmit: async event => {
    event.preventDefault();
    try {
      await api(`/studies/${encodeURIComponent(studyUid)}/reports/${report.id}/addenda`, {
        method: 'POST', headers: { 'If-Match': `"${report.version}"` },
        body: { text: text.value.trim() } });
      await drawReports(box, studyUid);
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('Addendum', text), h('button', { type: 'submit' }, 'Sign addendum'), message);
  return h('details', {}, h('summary', {}, 'Add an addendum'), form);
}

function summary(content) {
  if (!content) return '';
  if (typeof content === 'string') return content;
  const texts = [];
  const walk = v => {
    if (typeof v === 'string' || typeof v === 'number') texts.push(String(v));
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(content);
  return texts.join(' · ').slice(0, 400);
}

async function drawOrder(box, study) {
  const accession = value(study, 'AccessionNumber');
  const uid = value(study, 'StudyInstanceUID');
  try {
    const found = accession ? await api(`/orders?accession_number=${encodeURIComponent(accession)}`)
      : [];
    const mine = found.filter(o => o.study_instance_uid === uid || o.accession_number === accession);
    if (!mine.length) {
      box.replaceChildren(status('No order.'));
      return;
    }
    box.replaceChildren(table([
      { label: 'Order', get: o => o.id }, { label: 'Status', get: o => o.status },
      { label: 'Procedure', get: o => o.requested_procedure_description ?? '' },
      { label: 'Referring', get: o => o.referring_physician_name ?? '' },
      { label: 'Priority', get: o => o.priority ?? '' },
    ], mine));
  } catch (error) {
    box.replaceChildren(status(error.message, 'error'));
  }
}
