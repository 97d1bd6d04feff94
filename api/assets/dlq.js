// Dead letters: discarded jobs grouped by their last error, redriven one, some or all.

import {h, put, table, time, num, confirmDialog} from './dom.js';
import {api, query} from './api.js';
import {poll} from './live.js';

const SAMPLE = 1000;

/** The error's shape: digits and quoted values folded, so one cause groups together. */
function reason(e) {
  if (!e) return '(no error recorded)';
  return e.replace(/\d+/g, 'N').slice(0, 160);
}

export async function render(main, {me}) {
  const err = h('p', {class: 'error', role: 'alert'});
  const result = h('p', {class: 'muted', role: 'status', id: 'dlq-result'});
  const body = h('div', {});
  put(main, h('h1', {}, 'Dead letters'), err, result, body);
  const selected = new Set();
  const canAct = me.may.operate;

  const redrive = async (req, what) => {
    try {
      const r = await api('/dlq/redrive', {method: 'POST', body: req});
      put(result, `Redrove ${num(r.redriven.length)} job(s) (${what}).`);
      selected.clear();
    } catch (e) {
      err.textContent = `redrive: ${e.message}`;
    }
    await load();
  };

  const load = async () => {
    const [page, queues] = await Promise.all([
      api(`/jobs${query({state: 'discarded', order: 'desc', limit: SAMPLE})}`),
      api('/queues'),
    ]);
    const total = queues.queues.reduce((a, q) => a + (q.counts.discarded || 0), 0);
    const groups = new Map();
    for (const j of page.jobs) {
      const k = `${j.queue}\u0000${j.kind}\u0000${reason(j.last_error)}`;
      const g = groups.get(k) || {queue: j.queue, kind: j.kind, reason: reason(j.last_error), jobs: []};
      g.jobs.push(j);
      groups.set(k, g);
    }
    const sorted = [...groups.values()].sort((a, b) => b.jobs.length - a.jobs.length);
    const ask = async (ids, what) => {
      if (await confirmDialog(`Redrive ${num(ids.length)} dead job(s) (${what})? They run again with fresh attempts.`, `Redrive ${num(ids.length)}`)) {
        await redrive({ids}, what);
      }
    };
    put(body,
      h('p', {}, `${num(total)} dead job(s) in all (counts shared by every viewer); the newest ${num(page.jobs.length)} grouped by queue, kind and error:`),
      canAct ? h('div', {class: 'row'},
        h('button', {type: 'button', id: 'redrive-selected', disabled: selected.size === 0, on: {click: () => ask([...selected], 'selected')}}, `Redrive ${selected.size} selected`),
        me.queues.length ? null : h('button', {type: 'button', class: 'danger', id: 'redrive-all', disabled: total === 0,
          on: {click: async () => {
            if (await confirmDialog(`Redrive every dead job: ${num(total)} by the latest counts?`, `Redrive ${num(total)}`)) await redrive({all: true}, 'all');
          }}}, `Redrive all ${num(total)}`)) : null,
      table([
        ['Jobs', g => num(g.jobs.length), 'num'],
        ['Queue', g => g.queue, 'wrap'],
        ['Kind', g => g.kind, 'wrap'],
        ['Error', g => h('span', {class: 'last-error'}, g.reason), 'wrap'],
        ['Newest', g => time(g.jobs[0].finished_at), 'hide-narrow'],
        ['', g => canAct ? h('button', {type: 'button', on: {click: () => ask(g.jobs.map(j => j.id), `group ${g.kind}`)}}, 'Redrive group') : null],
      ], sorted, 'The dead-letter queue is empty.'),
      h('h2', {}, 'Jobs'),
      table([
        ...(canAct ? [['', j => {
          const c = h('input', {type: 'checkbox', checked: selected.has(j.id), 'aria-label': `select job ${j.id}`});
          c.addEventListener('change', () => { c.checked ? selected.add(j.id) : selected.delete(j.id); load(); });
          return c;
        }]] : []),
        ['ID', j => h('a', {href: `#/jobs/${j.id}`}, String(j.id)), 'num'],
        ['Queue', j => j.queue, 'wrap'],
        ['Kind', j => j.kind, 'wrap'],
        ['Error', j => h('span', {class: 'last-error'}, j.last_error || ''), 'wrap'],
        ['Died', j => time(j.finished_at), 'hide-narrow'],
        ['', j => canAct ? h('button', {type: 'button', on: {click: () => ask([j.id], `job ${j.id}`)}}, 'Redrive') : null],
      ], page.jobs.slice(0, 100), ''));
  };
  return poll(() => load().catch(e => { err.textContent = e.message; }), 10000);
}
