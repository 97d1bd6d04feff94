// Admin pages: the audit log and the tokens. The server refuses both to any token
// without the admin scope; the navigation only hides the links.

import {h, put, table, time, ago, confirmDialog} from './dom.js';
import {api, query} from './api.js';
import {poll} from './live.js';

/** How often the newest audit rows and the token list are read again. */
const REFRESH_MS = 10000;

const compact = v => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));

export async function audit(main, {params}) {
  const err = h('p', {class: 'error', role: 'alert'});
  const body = h('div', {});
  const pager = h('div', {class: 'pager'});
  const f = {action: params.get('action') || '', actor: params.get('actor') || ''};
  const form = h('form', {class: 'toolbar'},
    h('label', {}, 'Action', h('input', {name: 'action', value: f.action, placeholder: 'pause, cancel, …'})),
    h('label', {}, 'Actor', h('input', {name: 'actor', value: f.actor})),
    h('button', {type: 'submit'}, 'Apply'));
  form.addEventListener('submit', e => {
    e.preventDefault();
    const d = new FormData(form);
    location.hash = `#/audit${query({action: d.get('action'), actor: d.get('actor')})}`;
  });
  put(main, h('h1', {}, 'Audit log'), form, err, body, pager);
  const stack = [null];
  const load = async () => {
    try {
      const page = await api(`/audit${query({...f, limit: 100, before: stack[stack.length - 1]})}`);
      err.textContent = '';
      put(body, table([
        ['ID', r => String(r.id), 'num'],
        ['At', r => time(r.at)],
        ['Actor', r => compact(r.actor), 'wrap'],
        ['From', r => r.address || '', 'hide-narrow'],
        ['Action', r => compact(r.action)],
        ['Target', r => h('code', {}, compact(r.target).slice(0, 300)), 'wrap'],
        ['Result', r => compact(r.result), 'wrap'],
        ['Detail', r => h('code', {}, compact(r.detail).slice(0, 300)), 'wrap hide-narrow'],
      ], page.rows, 'No audit rows.'));
      put(pager,
        h('button', {type: 'button', disabled: stack.length === 1, on: {click: () => { stack.pop(); load(); }}}, '← Newer'),
        h('button', {type: 'button', disabled: !page.next_before, on: {click: () => { stack.push(page.next_before); load(); }}}, 'Older →'));
    } catch (e) {
      err.textContent = e.message;
    }
  };
  // Live on the newest page; an older page stays as read.
  await load();
  let first = true;
  return poll(async () => {
    if (first) { first = false; return; }
    if (stack.length === 1) await load();
  }, REFRESH_MS);
}

export async function tokens(main) {
  const err = h('p', {class: 'error', role: 'alert'});
  const created = h('div', {});
  const body = h('div', {});
  const form = h('form', {class: 'toolbar'},
    h('label', {}, 'Name', h('input', {name: 'name', required: true, maxlength: 100})),
    h('label', {}, 'Scopes', h('select', {name: 'scope'},
      ['read', 'enqueue', 'operate', 'admin'].map(s => h('option', {value: s}, s)))),
    h('label', {}, 'Queues (comma-separated, empty: all)', h('input', {name: 'queues'})),
    h('button', {type: 'submit'}, 'Create'));
  put(main, h('h1', {}, 'Tokens'), err, form, created, body);
  const load = async () => {
    const t = await api('/tokens');
    put(body, table([
      ['ID', x => String(x.id), 'num'],
      ['Name', x => x.name, 'wrap'],
      ['Scopes', x => x.scopes.join(', ')],
      ['Queues', x => (x.queues.length ? x.queues.join(', ') : 'all'), 'wrap'],
      ['Created', x => time(x.created_at), 'hide-narrow'],
      ['Last used', x => ago(x.last_used_at)],
      ['Revoked', x => (x.revoked_at ? time(x.revoked_at) : '–')],
      ['', x => (x.revoked_at ? null : h('button', {type: 'button', class: 'danger', on: {click: async () => {
        if (!await confirmDialog(`Revoke token ${x.id} (${x.name})? Whoever uses it is refused from the next request on.`, 'Revoke')) return;
        try { await api(`/tokens/${x.id}`, {method: 'DELETE'}); } catch (e) { err.textContent = e.message; }
        await load();
      }}}, 'Revoke'))],
    ], t.tokens, 'No tokens.'));
  };
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const d = new FormData(form);
    const queues = String(d.get('queues') || '').split(',').map(q => q.trim()).filter(Boolean);
    try {
      const r = await api('/tokens', {method: 'POST', body: {name: d.get('name'), scopes: [d.get('scope')], queues}});
      put(created, h('div', {class: 'panel'}, h('p', {}, `Token ${r.id} (${r.name}) created. It is shown only now:`),
        h('pre', {class: 'mono'}, r.token)));
      form.reset();
    } catch (e2) {
      err.textContent = e2.message;
    }
    await load();
  });
  return poll(() => load().catch(e => { err.textContent = e.message; }), REFRESH_MS);
}
