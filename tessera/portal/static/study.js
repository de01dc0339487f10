// One study: its patient and study values, series with thumbnails (WADO-RS /thumbnail
// fetched with the token, shown through blob: URLs), documents, reports and its order.
import { api, qido, imageUrl, request, dicomwebRoot, value, dicomDate } from './api.js';
import { h, status, table } from './dom.js';
import { viewerLink } from './worklist.js';

const DOCUMENT_MODALITIES = new Set(['DOC', 'SR', 'XC', 'OT']);
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

  const grid = h('div', { class: 'series', id: 'series' }, ...series.map(s => {
    const image = h('img', { alt: `Series ${value(s, 'SeriesNumber')} thumbnail` });
    const path = `${studyPath}/series/${encodeURIComponent(value(s, 'SeriesInstanceUID'))}`;
    imageUrl(`${path}/thumbnail`).then(url => { image.src = url; },
      () => { image.alt = 'no thumbnail'; });
    return h('figure', {}, image, h('figcaption', {},
      `${value(s, 'Modality')} #${value(s, 'SeriesNumber')} ${value(s, 'SeriesDescription')}`,
      h('br'), `${value(s, 'NumberOfSeriesRelatedInstances')} images`));
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
  await Promise.all([
    drawDocuments(documents, studyPath, series),
    drawReports(reports, studyUid),
    drawOrder(order, study),
  ]);
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
      { label: 'Signed', get: r => (r.signed_by ? `${r.signed_by} ${r.signed_at}` : '') },
      { label: 'Text', get: r => summary(r.content) },
    ], found));
  } catch (error) {
    box.replaceChildren(status(error.message, 'error'));
  }
}

function summary(content) {
  if (!content) return '';
  if (typeof content === 'string') return content;
  const texts = [];
  const walk = v => {
    if (typeof v === 'string') texts.push(v);
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
