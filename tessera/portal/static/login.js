// Sign in: POST {api}/login with the tenant's API root; the token is kept in sessionStorage
// (this tab only, gone when it closes).
import { login, session } from './api.js';
import { h, field, status, setStatus } from './dom.js';

export function render(main, { done }) {
  const tenant = h('input', { name: 'tenant', value: session.tenant, autocomplete: 'organization',
    required: true });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password',
    autocomplete: 'current-password', required: true });
  const message = status();
  const form = h('form', { id: 'login', onsubmit: async event => {
    event.preventDefault();
    setStatus(message, 'Signing in…');
    try {
      await login(tenant.value.trim(), username.value.trim(), password.value);
      done();
    } catch (error) {
      session.clear();
      setStatus(message, error.status === 401 ? 'Wrong user name or password.'
        : error.status === 404 ? 'No such account (tenant).' : error.message, 'error');
    }
  } },
  field('Account (tenant)', tenant), field('User name', username), field('Password', password),
  h('button', { type: 'submit' }, 'Sign in'), message);
  main.replaceChildren(h('h1', {}, 'Sign in'), form);
  username.focus();
}
