// Overview: jobs by state, throughput, nodes, the dead-letter queue, rescues and
// restarts. Counts come from /api/v1/queues (read once per api.counts_max_age for every
// caller, never per tab); the chart counts the live event stream in 5 s buckets.

import {h, put, card, num, lineChart, ago} from './dom.js';
import {api} from './api.js';
import {poll, onEvents} from './live.js';
import {sample, history} from './latency.js';

const STATES = ['available', 'running', 'scheduled', 'retryable', 'waiting', 'succeeded', 'discarded', 'cancelled'];
const BUCKET = 5000;
const fmt = v => (v === null ? '–' : `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms`);
const SPAN = 10 * 60 * 1000;

// Kept across visits to the page, so coming back shows the recent past.
const buckets = new Map();

function bump(kind) {
  const b = Math.floor(Date.now() / BUCKET) * BUCKET;
  let e = buckets.get(b);
  if (!e) { e = {enq: 0, ok: 0, bad: 0, rescued: 0, restarts: 0}; buckets.set(b, e); }
  if (kind === 'job.enqueued') e.enq++;
  else if (kind === 'job.succeeded') e.ok++;
  else if (kind === 'job.failed' || kind === 'job.discarded') e.bad++;
  else if (kind === 'job.rescued') e.rescued++;
  else if (kind === 'worker.restarted') e.restarts++;
  for (const k of buckets.keys()) if (k < Date.now() - SPAN) buckets.delete(k);
}

function series(field) {
  const now = Math.floor(Date.now() / BUCKET) * BUCKET;
  const pts = [];
  for (let t = now - SPAN + BUCKET; t < now; t += BUCKET) {
    const e = buckets.get(t);
    pts.push([t + BUCKET, e ? e[field] / (BUCKET / 1000) : 0]);
  }
  return pts;
}

export async function render(main) {
  const cards = h('div', {class: 'cards', id: 'overview-cards'});
  const chart = h('div', {class: 'panel'});
  const states = h('div', {});
  const latency = h('div', {class: 'panel', id: 'latency'});
  put(main, h('h1', {}, 'Overview'), cards,
    h('h2', {}, 'Throughput (live, 5 s buckets, last 10 min)'), chart,
    h('h2', {}, 'Queue wait and run time on this node (p50, p99 per 15 s, last hour)'), latency,
    h('h2', {}, 'Jobs by state'), states);

  const ms = (field) => history.filter(p => p[field] !== null).map(p => [p.t, p[field] * 1000]);
  const stopLatency = poll(async () => {
    if (!await sample()) {
      put(latency, h('p', {class: 'muted'}, 'The metrics need a token not limited to queues.'));
      return;
    }
    put(latency,
      history.length < 2 ? h('p', {class: 'muted'}, 'Collecting: a point per 15 s in which this node claimed or finished jobs.') :
        lineChart([
          {name: 'wait p50', cls: 'l-acc', points: ms('wait50')},
          {name: 'wait p99', cls: 'l-bad', points: ms('wait99')},
          {name: 'run p50', cls: 'l-ok', points: ms('run50')},
          {name: 'run p99', cls: 'l-ok dashed', points: ms('run99')},
        ], 3600 * 1000, ' ms'),
      h('div', {class: 'legend muted'},
        h('span', {class: 's-available'}, '— wait p50'), h('span', {class: 's-discarded'}, '— wait p99'),
        h('span', {class: 's-succeeded'}, '— run p50, - - run p99'),
        history.length ? h('span', {}, ` latest: wait p99 ${fmt(history[history.length - 1].wait99)}, run p99 ${fmt(history[history.length - 1].run99)}`) : null));
  }, 15000);

  const drawChart = () => put(chart,
    lineChart([
      {name: 'enqueued', cls: 'l-acc', points: series('enq')},
      {name: 'succeeded', cls: 'l-ok', points: series('ok')},
      {name: 'failed', cls: 'l-bad', points: series('bad')},
    ], SPAN),
    h('div', {class: 'legend muted'},
      h('span', {class: 's-available'}, '— enqueued'), h('span', {class: 's-succeeded'}, '— succeeded'), h('span', {class: 's-discarded'}, '— failed')));

  const unsubscribe = onEvents(ev => bump(ev.kind));
  const stopChart = poll(async () => drawChart(), BUCKET);

  const stopPoll = poll(async () => {
    const [q, n, m] = await Promise.all([
      api('/queues'),
      api('/nodes').catch(() => null),
      api('/mesh').catch(() => null),
    ]);
    const total = {};
    let perSecond = 0;
    for (const queue of q.queues) {
      for (const [s, c] of Object.entries(queue.counts)) total[s] = (total[s] || 0) + c;
      perSecond += queue.throughput.per_second;
    }
    const up = n ? n.nodes.filter(x => x.state === 'up').length : null;
    const restarts = n ? n.nodes.flatMap(x => x.workers).reduce((a, w) => a + w.restarts, 0) : null;
    const recent = [...buckets.values()];
    put(cards,
      card('finished / s (last minute)', perSecond.toFixed(2)),
      card('available', num(total.available || 0)),
      card('running', num(total.running || 0)),
      card('dead letters', num(total.discarded || 0), h('a', {href: '#/dlq'}, 'open')),
      card('nodes up', up === null ? '–' : `${up} / ${n.nodes.length}`),
      card('worker restarts', num(restarts)),
      card('rescues (live)', num(recent.reduce((a, e) => a + e.rescued, 0))),
      m ? card('mesh', m.quorum ? 'quorum' : 'NO QUORUM',
        h('span', {class: 'muted'}, ` ${m.members.length} members`)) : null,
      h('div', {class: 'card muted'}, `counts as of ${ago(q.counts_at)}`));
    put(states, h('div', {class: 'cards'}, STATES.map(s =>
      h('a', {class: 'card', href: `#/jobs?state=${s}`}, h('div', {class: 'n'}, num(total[s] || 0)), h('div', {class: `l s-${s}`}, s)))));
  }, 5000);
  return () => { unsubscribe(); stopChart(); stopPoll(); stopLatency(); };
}
