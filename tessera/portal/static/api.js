// The session (token, tenant, who I am) and every call to the server. The portal has no
// logic of its own: each action is one of the public API calls a script could make.
const STORE = 'tessera.portal';

// The path before /portal/ (a reverse proxy's prefix), so the API roots follow the portal.
const here = location.pathname;
export const PREFIX = here.slice(0, Math.max(0, here.indexOf('/portal/')));

export const session = {
  token: null,
  tenant: 'default',
  me: null, // GET {api}/me: username, permissions, sources, upload_sources, source_descriptions
  config: { viewer: null, anonymous: false },
  load() {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || 'null');
    if (saved) Object.assign(this, { token: saved.token, tenant: saved.tenant });
  },
  save() {
    sessionStorage.setItem(STORE, JSON.stringify({ token: this.token, tenant: this.tenant }));
  },
  clear() {
    sessionStorage.removeItem(STORE);
    this.token = null;
    this.me = null;
  },
  can(permission) {
    // As the server's Scope.can: "*" (the anonymous quick start) holds every permission.
    const held = this.me ? this.me.permissions : [];
    return held.includes('*') || held.includes(permission);
  },
};

// A source's name with its description (GET {api}/me `source_descriptions`: the sources the
// user sees or uploads as), e.g. "ClinicA: Alpha clinic, CT and MR".
export function sourceLabel(name) {
  const description = session.me?.source_descriptions?.[name];
  return description ? `${name}: ${description}` : name;
}

// A source chooser: a <select> of the user's upload sources when they are limited, else a
// free name with the known sources (and their descriptions) offered: [input, datalist or ''].
export function sourceInput(h) {
  const restricted = session.me?.upload_sources;
  if (restricted && restricted.length) {
    return [h('select', { name: 'source' },
      ...restricted.map(s => h('option', { value: s }, sourceLabel(s)))), ''];
  }
  const known = Object.keys(session.me?.source_descriptions ?? {});
  const id = `sources-${Math.random().toString(36).slice(2, 9)}`;
  const input = h('input', { name: 'source', placeholder: 'default', list: id });
  return [input, h('datalist', { id }, ...known.map(s => h('option', { value: s, label: sourceLabel(s) })))];
}

export function tenantBase(tenant = session.tenant) {
  return tenant && tenant !== 'default' ? `${PREFIX}/t/${encodeURIComponent(tenant)}` : PREFIX;
}
export const apiRoot = () => `${tenantBase()}/api/v1`;
export const dicomwebRoot = () => `${tenantBase()}/dicomweb`;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

// Listeners told when the server refuses the token (expired, logged out elsewhere).
export const onUnauthorized = [];

export async function request(url, { method = 'GET', headers = {}, body, accept } = {}) {
  const all = { ...headers };
  if (session.token) all.Authorization = `Bearer ${session.token}`;
  if (accept) all.Accept = accept;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof FormData)
      && typeof body !== 'string') {
    all['Content-Type'] = 'application/json';
    body = JSON.stringify(body);
  }
  const response = await fetch(url, { method, headers: all, body });
  if (!response.ok) {
    let detail = '';
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || '';
    } catch { /* not JSON */ }
    if (response.status === 401 && session.token) onUnauthorized.forEach(f => f());
    throw new ApiError(response.status, detail || `${response.status} ${response.statusText}`);
  }
  return response;
}

export async function api(path, options = {}) {
  const response = await request(apiRoot() + path, { accept: 'application/json', ...options });
  return response.status === 204 ? null : response.json();
}

export async function qido(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.append(key, value);
  }
  const url = `${dicomwebRoot()}${path}${query.size ? '?' + query : ''}`;
  const response = await request(url, { accept: 'application/dicom+json' });
  return response.status === 204 ? [] : response.json();
}

// A rendered image (thumbnail) fetched with the token, as a blob: URL for an <img>.
export async function imageUrl(path) {
  const response = await request(dicomwebRoot() + path, { accept: 'image/jpeg, image/png' });
  return URL.createObjectURL(await response.blob());
}

export async function login(tenant, username, password) {
  session.tenant = tenant || 'default';
  session.token = null;
  const answer = await api('/login', { method: 'POST', body: { username, password } });
  session.token = answer.access_token;
  session.save();
  await loadMe();
}

export async function logout() {
  try {
    if (session.token) await api('/logout', { method: 'POST' });
  } finally {
    session.clear();
  }
}

export async function loadMe() {
  session.me = await api('/me');
  return session.me;
}

export async function loadConfig() {
  try {
    const response = await fetch(`${PREFIX}/portal/config.json`);
    if (response.ok) session.config = await response.json();
  } catch { /* no config: no viewer link */ }
}

// --- DICOM JSON -----------------------------------------------------------------------
export const TAG = {
  // tessera's private block for the study's order status (docs/qido.md "Order status")
  OrderStatus: '00711001',
  StudyInstanceUID: '0020000D', SeriesInstanceUID: '0020000E', SOPInstanceUID: '00080018',
  PatientName: '00100010', PatientID: '00100020', PatientBirthDate: '00100030',
  AccessionNumber: '00080050', StudyDate: '00080020', StudyTime: '00080030',
  StudyDescription: '00081030', ModalitiesInStudy: '00080061', Modality: '00080060',
  NumberOfStudyRelatedSeries: '00201206', NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209', SeriesDescription: '0008103E',
  SeriesNumber: '00200011', SOPClassUID: '00080016', InstanceNumber: '00200013',
  DocumentTitle: '00420010', ReferringPhysicianName: '00080090',
};

export function value(dataset, keyword) {
  const element = dataset[TAG[keyword]];
  if (!element || !element.Value || !element.Value.length) return '';
  return element.Value.map(v => (typeof v === 'object' && v !== null
    ? (v.Alphabetic ?? '').replaceAll('^', ' ').trim() : String(v))).join(', ');
}

export function dicomDate(text) {
  return /^\d{8}$/.test(text) ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6)}` : text;
}
