// Jobs: filters, keyset pages, selection of some jobs or of every job matching the
// filter, and bulk actions with a confirmation that says how many jobs they touch
// (for "all matching": POST /api/v1/jobs/bulk/{action}/count, exact or "more than").

import {h, put, table, badge, time, num, confirmDialog} from './dom.js';
import {api, query} from './api.js';
import {poll, onEvents, debounce} from './live.js';

export const STATES = ['available', 'running', 'scheduled', 'retryable', 'waiting', 'succeeded', 'discarded', 'cancelled'];
const PAGE = 50;
const FILTER_KEYS = ['queue', 'state', 'kind', 'priority_min', 'priority_max', 'created_from', 'created_to', 'payload'];

/** The filter of the page's parameters, as the list takes it. */
function listFilter(params) {
  const f = {};
  for (const k of FILTER_KEYS) if (params.get(k)) f[k] = params.get(k);
  return f;
}

/** The same filter as a bulk action's body takes it. */
function bodyFilter(f) {
  const b = {};
  if (f.queue) b.queues = [f.queue];
  if (f.state) b.states = f.state.split(',');
  if (f.kind) b.kind = f.kind;
  for (const k of ['priority_min', 'priority_max', 'created_from', 'created_to']) if (f[k]) b[k] = Number(f[k]);
  if (f.payload) b.payload = f.payload;
  return b;
}

function localInput(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** How many jobs `verb` would touch: the matches of the filter in the states it
 * changes, exact from the shared counts or counted by the store up to its cap. */
async function countTouched(verb, f) {
  return api(`/jobs/bulk/${verb}/count`, {method: 'POST', body: {filter: bodyFilter(f)}});
}

export async function render(main, {me, params}) {
  const f = listFilter(params);
  const order = params.get('order') || 'desc';
  const selected = new Set();
  let cursors = [null];
  let rows = [];

  const input = (name, attrs = {}) => h('input', {name, value: f[name] || '', ...attrs});
  const form = h('form', {class: 'toolbar', id: 'job-filter'},
    h('label', {}, 'State', h('select', {name: 'state'}, h('option', {value: ''}, 'any'),
      STATES.map(s => h('option', {value: s, selected: f.state === s}, s)))),
    h('label', {}, 'Queue', input('queue', {size: 10})),
    h('label', {}, 'Kind', input('kind', {size: 10})),
    h('label', {}, 'Priority ≥', input('priority_min', {type: 'number', min: -100, max: 100, class: 'narrow'})),
    h('label', {}, 'Priority ≤', input('priority_max', {type: 'number', min: -100, max: 100, class: 'narrow'})),
    h('label', {}, 'Enqueued from', h('input', {name: 'created_from', type: 'datetime-local', value: localInput(f.created_from)})),
    h('label', {}, 'to', h('input', {name: 'created_to', type: 'datetime-local', value: localInput(f.created_to)})),
    h('label', {class: 'grow'}, 'Payload match', input('payload', {placeholder: '$.customer.id == "42"'})),
    h('label', {}, 'Order', h('select', {name: 'order'},
      h('option', {value: 'desc', selected: order === 'desc'}, 'newest first'),
      h('option', {value: 'asc', selected: order === 'asc'}, 'oldest first'))),
    h('button', {type: 'submit'}, 'Apply'),
    h('a', {href: '#/jobs'}, 'Clear'));
  form.addEventListener('submit', e => {
    e.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const [k, v] of data.entries()) {
      if (!v) continue;
      next[k] = (k === 'created_from' || k === 'created_to') ? String(new Date(v).getTime()) : v;
    }
    location.hash = `#/jobs${query(next)}`;
  });

  const err = h('p', {class: 'error', role: 'alert', id: 'jobs-error'});
  const result = h('p', {class: 'muted', id: 'bulk-result', role: 'status'});
  const list = h('div', {id: 'job-table'});
  const pager = h('div', {class: 'pager'});
  const actions = h('div', {class: 'row', id: 'bulk-actions'});
  // Folded on a phone unless a filter is set, so the table is on the first screen.
  const folded = matchMedia('(max-width: 760px)').matches && !Object.keys(f).length;
  const filters = h('details', {class: 'filters', open: !folded}, h('summary', {}, 'Filters'), form);
  put(main, h('h1', {}, 'Jobs'), filters, err, actions, result, list, pager);

  const load = async () => {
    const page = await api(`/jobs${query({...f, order, limit: PAGE, cursor: cursors[cursors.length - 1]})}`);
    rows = page.jobs;
    err.textContent = '';
    drawTable();
    put(pager,
      h('button', {type: 'button', disabled: cursors.length === 1, on: {click: () => { cursors.pop(); load(); }}}, '← Previous'),
      h('span', {class: 'muted'}, `page ${cursors.length}`),
      h('button', {type: 'button', id: 'next-page', disabled: !page.next_cursor, on: {click: () => { cursors.push(page.next_cursor); load(); }}}, 'Next →'));
  };
  const safeLoad = () => load().catch(e => { err.textContent = e.message; });

  const drawTable = () => {
    const cols = [];
    if (me.may.operate) {
      const all = h('input', {type: 'checkbox', title: 'select this page', 'aria-label': 'select this page',
        checked: rows.length > 0 && rows.every(r => selected.has(r.id))});
      all.addEventListener('change', () => {
        for (const r of rows) all.checked ? selected.add(r.id) : selected.delete(r.id);
        drawTable(); drawActions();
      });
      cols.push([all, r => {
        const c = h('input', {type: 'checkbox', class: 'pick', checked: selected.has(r.id), 'aria-label': `select job ${r.id}`});
        c.addEventListener('change', () => { c.checked ? selected.add(r.id) : selected.delete(r.id); drawActions(); });
        return c;
      }]);
    }
    cols.push(
      ['ID', r => h('a', {href: `#/jobs/${r.id}`}, String(r.id)), 'num'],
      ['State', r => badge(r.state)],
      ['Queue', r => h('span', {class: 'queue'}, r.queue), 'wrap'],
      ['Kind', r => h('span', {class: 'kind'}, r.kind), 'wrap'],
      ['Pri', r => String(r.priority), 'num hide-narrow'],
      ['Attempt', r => `${r.attempt}/${r.max_attempts}`, 'num hide-narrow'],
      ['Run at', r => time(r.run_at), 'hide-narrow'],
      ['Last error', r => h('span', {class: 'last-error'}, r.last_error ? r.last_error.slice(0, 200) : ''), 'wrap hide-narrow']);
    put(list, table(cols, rows, 'No job matches.', r => ({dataset: {id: r.id}})));
  };

  const runBulk = async (verb, body, what) => {
    try {
      const r = await api(`/jobs/bulk/${verb}`, {method: 'POST', body});
      put(result, `${verb}: ${num(r.changed)} changed, ${num(r.skipped)} left as they were, ${num(r.not_found)} not found (${what}).`);
      selected.clear();
    } catch (e) {
      put(result, h('span', {class: 'error'}, `${verb}: ${e.message}`));
    }
    drawActions();
    await safeLoad();
  };

  const drawActions = () => {
    if (!me.may.operate) { put(actions); return; }
    const verbs = [['cancel', 'Cancel'], ['retry', 'Retry now'], ['redrive', 'Redrive'], ['delete', 'Delete']];
    put(actions,
      h('span', {class: 'muted', id: 'selected-count'}, `${selected.size} selected`),
      verbs.map(([verb, label]) => h('button', {type: 'button', class: `bulk-${verb}`, disabled: selected.size === 0,
        on: {click: async () => {
          const n = selected.size;
          if (await confirmDialog(`${label}: ${n} selected job${n === 1 ? '' : 's'}. Jobs in states the action does not apply to are left as they are.`, `${label} ${n}`)) {
            await runBulk(verb, {ids: [...selected]}, `${n} selected`);
          }
        }}}, label)),
      h('span', {class: 'muted'}, ' · all matching the filter:'),
      verbs.map(([verb, label]) => h('button', {type: 'button', class: `all-${verb}`,
        on: {click: async () => {
          put(result, 'Counting the matching jobs…');
          let c;
          try {
            c = await countTouched(verb, f);
          } catch (e) {
            put(result, h('span', {class: 'error'}, `${verb}: ${e.message}`));
            return;
          }
          const count = !c.counted ? 'an uncounted number of' : c.exact ? num(c.jobs) : `more than ${num(c.cap)}`;
          put(result);
          const states = c.states.join(', ');
          const question = c.counted && c.exact && c.jobs === 0
            ? `${label}: no job matching the filter is in a state it changes (${states}). Run it anyway?`
            : `${label} ${count} job${c.jobs === 1 && c.exact ? '' : 's'}: every job matching the filter in a state it changes (${states}), ${c.source === 'counts' ? 'by the shared counts' : c.counted ? 'counted now' : 'too many to count within 150 ms'}. Jobs enqueued or changed before it runs may make the number differ; the result says what it did.`;
          if (await confirmDialog(question, c.counted ? `${label} ${count}` : `${label} all`)) {
            await runBulk(verb, {filter: bodyFilter(f)}, 'all matching the filter');
          }
        }}}, `${label} all`)));
  };
  drawActions();

  const refresh = debounce(safeLoad, 500);
  const unsubscribe = onEvents(ev => { if (ev.kind.startsWith('job.') && cursors.length === 1) refresh(); });
  const stop = poll(safeLoad, 15000);
  return () => { unsubscribe(); stop(); };
}
