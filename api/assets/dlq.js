// Dead letters: every discarded job grouped by queue and reason (a store aggregate,
// GET /api/v1/dlq/groups, shared by every viewer), redriven by group, one, some or all.

import {h, put, table, time, num, ago, confirmDialog} from './dom.js';
import {api, query} from './api.js';
import {poll} from './live.js';

const NEWEST = 100;

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
    const [page, g] = await Promise.all([
      api(`/jobs${query({state: 'discarded', order: 'desc', limit: NEWEST})}`),
      api('/dlq/groups'),
    ]);
    const total = g.total_jobs;
    const ask = async (ids, what) => {
      if (await confirmDialog(`Redrive ${num(ids.length)} dead job(s) (${what})? They run again with fresh attempts.`, `Redrive ${num(ids.length)}`)) {
        await redrive({ids}, what);
      }
    };
    const askGroup = async grp => {
      if (await confirmDialog(`Redrive the ${num(grp.jobs)} dead job(s) of queue “${grp.queue}” whose reason reads “${grp.reason}” (by the latest read; every job of the group when it runs)? They run again with fresh attempts.`, `Redrive ${num(grp.jobs)}`)) {
        await redrive({group: {queue: grp.queue, reason: grp.reason}}, `group of ${num(grp.jobs)}`);
      }
    };
    put(body,
      h('p', {id: 'dlq-summary'}, `${num(total)} dead job(s) in ${num(g.total_groups)} group(s) by queue and reason (digits folded to #), read ${ago(g.read_at)}`,
        g.total_groups > g.groups.length ? `; the ${num(g.groups.length)} largest shown` : '', ':'),
      canAct ? h('div', {class: 'row'},
        h('button', {type: 'button', id: 'redrive-selected', disabled: selected.size === 0, on: {click: () => ask([...selected], 'selected')}}, `Redrive ${selected.size} selected`),
        me.queues.length ? null : h('button', {type: 'button', class: 'danger', id: 'redrive-all', disabled: total === 0,
          on: {click: async () => {
            if (await confirmDialog(`Redrive every dead job: ${num(total)} by the latest read?`, `Redrive ${num(total)}`)) await redrive({all: true}, 'all');
          }}}, `Redrive all ${num(total)}`)) : null,
      table([
        ['Jobs', grp => num(grp.jobs), 'num'],
        ['Queue', grp => grp.queue, 'wrap'],
        ['Reason', grp => h('span', {class: 'last-error'}, grp.reason), 'wrap'],
        ['Newest', grp => [h('a', {href: `#/jobs/${grp.sample}`}, String(grp.sample)), grp.sample_kind === null ? '' : ` ${grp.sample_kind}`], 'wrap hide-narrow'],
        ['Last', grp => time(grp.last_at), 'hide-narrow'],
        ['', grp => canAct ? h('button', {type: 'button', class: 'redrive-group', on: {click: () => askGroup(grp)}}, 'Redrive group') : null],
      ], g.groups, 'The dead-letter queue is empty.', grp => ({dataset: {queue: grp.queue, jobs: grp.jobs}})),
      h('h2', {}, `Newest ${NEWEST}`),
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
      ], page.jobs, ''));
  };
  return poll(() => load().catch(e => { err.textContent = e.message; }), 10000);
}
