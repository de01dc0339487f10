// My Team (the `admin` permission): users with their role and source lock, roles, sources
// and API keys; forms to add a user, a source and a key, change a user's role and source
// lists, a source's description, disable a user, revoke a key.
import { api } from './api.js';
import { h, field, status, setStatus, table } from './dom.js';

const list = values => (values && values.length ? values.join(', ') : 'all');

export async function render(main) {
  const users = h('section', { id: 'users' });
  const roles = h('section', { id: 'roles' });
  const sources = h('section', { id: 'sources' });
  const keys = h('section', { id: 'keys' });
  main.replaceChildren(h('h1', {}, 'My Team'), users, roles, sources, keys);
  const [roleList, sourceList] = await Promise.all([api('/roles'), api('/sources')]);
  await Promise.all([
    drawUsers(users, roleList, sourceList),
    drawRoles(roles, roleList),
    drawSources(sources, sourceList),
    drawKeys(keys),
  ]);
}

function checkboxes(name, values, selected = []) {
  return h('fieldset', { class: 'choices' }, h('legend', {}, name),
    ...values.map(v => h('label', {}, h('input', { type: 'checkbox', name, value: v,
      checked: selected.includes(v) }), ` ${v} `)));
}
const checked = (form, name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map(i => i.value);

async function drawUsers(box, roleList, sourceList) {
  const found = await api('/users');
  const message = status();
  const redraw = () => drawUsers(box, roleList, sourceList);
  const toggle = user => h('button', { type: 'button', class: 'toggle', onclick: async () => {
    try {
      await api(`/users/${encodeURIComponent(user.username)}`, { method: 'PATCH', body: { disabled: !user.disabled } });
      await redraw();
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, user.disabled ? 'Enable' : 'Disable');
  // PATCH {api}/users/{name} {"password"}: ends the user's sessions (docs/accounts.md).
  const setPassword = user => {
    const input = h('input', { type: 'password', name: 'new_password', minlength: 8,
      autocomplete: 'new-password', required: true, 'aria-label': `New password for ${user.username}` });
    const form = h('form', { class: 'inline password', onsubmit: async event => {
      event.preventDefault();
      try {
        await api(`/users/${encodeURIComponent(user.username)}`, { method: 'PATCH', body: { password: input.value } });
        setStatus(message, `Password of ${user.username} changed.`, 'ok');
        form.reset();
      } catch (error) { setStatus(message, error.message, 'error'); }
    } }, input, h('button', { type: 'submit' }, 'Set'));
    return h('details', {}, h('summary', {}, 'Password'), form);
  };
  const names = sourceList.map(s => s.name);
  // PATCH {api}/users/{name} {"role", "sources", "upload_sources"}: the server checks that
  // the caller may grant them (docs/accounts.md, delegated administration); no source ticked
  // is every source.
  const edit = user => {
    const role = h('select', { name: 'role' }, ...roleList.map(r => h('option',
      { value: r.name, selected: r.name === user.role }, r.name)));
    const form = h('form', { class: 'inline edit-user', onsubmit: async event => {
      event.preventDefault();
      try {
        await api(`/users/${encodeURIComponent(user.username)}`, { method: 'PATCH', body: {
          role: role.value, sources: checked(form, 'sources'),
          upload_sources: checked(form, 'upload_sources'),
        } });
        await redraw();
        setStatus(box.querySelector('.status'), `${user.username} changed.`, 'ok');
      } catch (error) { setStatus(message, error.message, 'error'); }
    } }, field('Role', role), checkboxes('sources', names, user.sources),
    checkboxes('upload_sources', names, user.upload_sources),
    h('button', { type: 'submit' }, 'Save'));
    return h('details', { class: 'edit' }, h('summary', {}, 'Edit'), form);
  };
  const username = h('input', { name: 'username', required: true, autocomplete: 'off' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: 8 });
  const role = h('select', { name: 'role' }, ...roleList.map(r => h('option', { value: r.name }, r.name)));
  const form = h('form', { id: 'new-user', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    try {
      await api('/users', { method: 'POST', body: {
        username: username.value.trim(), role: role.value, password: password.value || undefined,
        sources: checked(form, 'sources'), upload_sources: checked(form, 'upload_sources'),
      } });
      await redraw();
    } catch (error) { setStatus(formMessage, error.message, 'error'); }
  } }, field('User name', username), field('Password', password), field('Role', role),
  checkboxes('sources', names), checkboxes('upload_sources', names),
  h('button', { type: 'submit' }, 'Add user'));
  const formMessage = status();
  box.replaceChildren(h('h2', {}, 'Users'), table([
    { label: 'User', get: u => u.username },
    { label: 'Role', get: u => u.role },
    { label: 'Sees sources', get: u => list(u.sources) },
    { label: 'Uploads as', get: u => list(u.upload_sources) },
    { label: 'State', get: u => (u.disabled ? 'disabled' : 'active') },
    { label: 'Actions', sort: false, get: u => (u.system_admin ? '' : h('span', {}, toggle(u), edit(u), setPassword(u))) },
  ], found, { sortable: true }), message,
  h('details', { class: 'card' }, h('summary', {}, 'Add a user'), form, formMessage));
}

async function drawRoles(box, roleList) {
  box.replaceChildren(h('h2', {}, 'Roles'), table([
    { label: 'Role', get: r => r.name },
    { label: 'Permissions', get: r => r.permissions.join(', ') },
    { label: 'Kind', get: r => (r.builtin ? 'built in' : 'custom') },
  ], roleList));
}

async function drawSources(box, sourceList) {
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+' });
  const description = h('input', { name: 'description' });
  const message = status();
  const form = h('form', { id: 'new-source', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    try {
      await api('/sources', { method: 'POST', body: { name: name.value.trim(), description: description.value.trim() } });
      await drawSources(box, await api('/sources'));
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, field('Name', name), field('Description', description), h('button', { type: 'submit' }, 'Add source'));
  // PATCH {api}/sources/{name} {"description"}: a source's description, shown wherever the
  // portal offers or shows the source.
  const describe = s => {
    const text = h('input', { name: 'description', value: s.description ?? '', maxlength: 256 });
    const said = status();
    const edit = h('form', { class: 'inline describe-source', dataset: { source: s.name },
      onsubmit: async event => {
        event.preventDefault();
        try {
          await api(`/sources/${encodeURIComponent(s.name)}`, { method: 'PATCH',
            body: { description: text.value.trim() } });
          await drawSources(box, await api('/sources'));
        } catch (error) { setStatus(said, error.message, 'error'); }
      } }, field('Description', text), h('button', { type: 'submit' }, 'Save'), said);
    return h('details', {}, h('summary', {}, 'Edit'), edit);
  };
  box.replaceChildren(h('h2', {}, 'Sources'), table([
    { label: 'Source', get: s => s.name },
    { label: 'Description', get: s => s.description ?? '' },
    { label: 'Default issuer of patient ID', get: s => s.default_issuer_of_patient_id ?? '' },
    { label: 'Change', get: describe },
  ], sourceList), h('details', { class: 'card' }, h('summary', {}, 'Add a source'), form, message));
}

async function drawKeys(box) {
  const found = await api('/api-keys');
  const message = status();
  const user = h('input', { name: 'user', required: true });
  const name = h('input', { name: 'name' });
  const shown = status();
  const form = h('form', { id: 'new-key', class: 'inline', onsubmit: async event => {
    event.preventDefault();
    try {
      const key = await api('/api-keys', { method: 'POST', body: { user: user.value.trim(), name: name.value.trim() } });
      await drawKeys(box);
      box.append(h('p', { class: 'card', id: 'new-key-value' },
        'The new key (shown only this once): ', h('code', {}, key.key)));
    } catch (error) { setStatus(shown, error.message, 'error'); }
  } }, field('For user', user), field('Name', name), h('button', { type: 'submit' }, 'Create key'));
  const revoke = key => (key.revoked_at ? 'revoked' : h('button', { type: 'button', onclick: async () => {
    try {
      await api(`/api-keys/${key.id}`, { method: 'DELETE' });
      await drawKeys(box);
    } catch (error) { setStatus(message, error.message, 'error'); }
  } }, 'Revoke'));
  box.replaceChildren(h('h2', {}, 'API keys'), table([
    { label: 'User', get: k => k.user },
    { label: 'Name', get: k => k.name },
    { label: 'Starts with', get: k => k.prefix },
    { label: 'Created', get: k => (k.created_at ?? '').slice(0, 16) },
    { label: 'Expires', get: k => (k.expires_at ?? 'never').slice(0, 16) },
    { label: 'State', sort: false, get: revoke },
  ], found, { sortable: true }), message,
  h('details', { class: 'card' }, h('summary', {}, 'Create an API key'), form, shown));
}
