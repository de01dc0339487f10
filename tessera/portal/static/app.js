// The shell: signs in, draws the navigation the caller's permissions allow, and routes
// #/page/args to the page modules (one module per page, loaded when first shown).
import { session, loadMe, loadConfig, logout, onUnauthorized } from './api.js';
import { h, status } from './dom.js';
import { startNotifications, stopNotifications, badge, clearBadge } from './notify.js';

// Each page: the permission that shows it in the navigation (null: any signed-in user).
export const PAGES = [
  { name: 'worklist', label: 'Worklist', permission: 'read', module: './worklist.js' },
  { name: 'upload', label: 'Upload', permission: 'upload', module: './upload.js' },
  { name: 'orders', label: 'Orders', permission: 'read', module: './orders.js' },
  { name: 'team', label: 'My Team', permission: 'admin', module: './team.js' },
  { name: 'peers', label: 'DIMSE peers', permission: 'admin', module: './peers.js' },
  { name: 'routing', label: 'Routing', permission: 'admin', module: './routing.js' },
  { name: 'webhooks', label: 'Webhooks', permission: 'admin', module: './webhooks.js' },
  { name: 'templates', label: 'Report templates', permission: 'report.write', module: './templates.js' },
  { name: 'audit', label: 'Audit log', permission: 'admin', module: './audit.js' },
  { name: 'study', permission: 'read', module: './study.js', hidden: true },
  { name: 'password', permission: null, module: './password.js', hidden: true },
];

const main = document.getElementById('main');

function allowed(page) {
  return page.permission === null || session.can(page.permission);
}

function drawHeader(current) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session.me) {
    nav.replaceChildren();
    who.replaceChildren();
    return;
  }
  if (current === 'worklist') clearBadge();
  nav.replaceChildren(...PAGES.filter(p => !p.hidden && allowed(p)).map(p => h('a', {
    href: `#/${p.name}`, 'aria-current': p.name === current ? 'page' : null,
    'data-page': p.name,
  }, p.label, p.name === 'worklist' ? badge() : null)));
  const tenant = session.tenant !== 'default' ? ` (${session.tenant})` : '';
  who.replaceChildren(
    h('span', { id: 'username' }, `${session.me.username ?? session.me.principal}${tenant}`),
    session.token ? h('a', { href: '#/password', id: 'change-password' }, 'Password') : null,
    session.token
      ? h('button', { type: 'button', id: 'signout', onclick: signOut }, 'Sign out')
      : h('a', { href: '#/login', id: 'signin' }, 'Sign in'),
  );
}

async function signOut() {
  stopNotifications();
  await logout().catch(() => {});
  location.hash = '#/login';
  route();
}

onUnauthorized.push(() => {
  stopNotifications();
  session.clear();
  location.hash = '#/login';
});

export async function route() {
  const [name = '', ...args] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (!session.me || name === 'login') {
    drawHeader('');
    const { render } = await import('./login.js');
    return render(main, { done: () => {
      startNotifications();
      location.hash = '#/worklist';
      route();
    } });
  }
  const page = PAGES.find(p => p.name === name && allowed(p))
    ?? PAGES.find(p => !p.hidden && allowed(p));
  drawHeader(page?.name);
  if (!page) {
    main.replaceChildren(h('h1', {}, 'Nothing to show'),
      h('p', {}, 'Your account has no permission that the portal has a page for.'));
    return;
  }
  if (page.name !== name) history.replaceState(null, '', `#/${page.name}`);
  main.replaceChildren(status('Loading…'));
  try {
    const { render } = await import(page.module);
    await render(main, { args });
  } catch (error) {
    main.replaceChildren(status(String(error.message || error), 'error'));
  }
  main.focus();
}

async function start() {
  session.load();
  const tenant = new URLSearchParams(location.search).get('tenant');
  if (tenant && tenant !== session.tenant) session.clear();
  if (tenant) session.tenant = tenant;
  await loadConfig();
  // Without a token, /me answers only where the server serves anonymous requests (the
  // loopback quick start, docs/accounts.md).
  if (session.token || session.config.anonymous) {
    try {
      await loadMe();
    } catch {
      session.clear();
    }
  }
  if (session.me) startNotifications();
  window.addEventListener('hashchange', route);
  await route();
}

start();
