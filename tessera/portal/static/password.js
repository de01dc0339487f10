// Change my own password: POST {api}/me/password with the current and the new password. The
// server checks the current one (403) and the password policy (400, its message shown); my
// other sessions end, this one goes on.
import { api } from './api.js';
import { h, field, status, setStatus } from './dom.js';

export async function render(main) {
  const current = h('input', { name: 'current_password', type: 'password', required: true,
    autocomplete: 'current-password' });
  const fresh = h('input', { name: 'new_password', type: 'password', required: true,
    autocomplete: 'new-password' });
  const again = h('input', { name: 'repeat_password', type: 'password', required: true,
    autocomplete: 'new-password' });
  const message = status();
  const form = h('form', { id: 'password', onsubmit: async event => {
    event.preventDefault();
    // Only a typing check: the server decides what a good password is.
    if (fresh.value !== again.value) {
      setStatus(message, 'The two new passwords differ.', 'error');
      again.focus();
      return;
    }
    setStatus(message, 'Changing…');
    try {
      await api('/me/password', { method: 'POST',
        body: { current_password: current.value, new_password: fresh.value } });
      form.reset();
      setStatus(message, 'Password changed. Your other sessions have been signed out.', 'ok');
    } catch (error) {
      setStatus(message, `Not changed: ${error.message}`, 'error');
    }
  } },
  field('Current password', current), field('New password', fresh),
  field('New password again', again), h('button', { type: 'submit' }, 'Change password'),
  message);
  main.replaceChildren(h('h1', {}, 'Change my password'), form);
}
