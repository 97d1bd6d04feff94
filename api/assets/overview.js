// Overview: jobs by state, throughput, nodes, the dead-letter queue, rescues and
// restarts (per minute over the hour, from /api/v1/stats/incidents). Counts come from
// /api/v1/queues (read once per api.counts_max_age for every
// caller, never per tab); the throughput chart starts from the last hour read from the
// store (/api/v1/stats/throughput, 10 s intervals, shared by every caller the same way)
// and goes on counting the live event stream from the moment that read was taken;
// queue wait and run time per minute come from /api/v1/stats/latency, read from the
// store for the whole cluster (also shared by every caller).

import {h, put, card, num, lineChart, ago} from './dom.js';
import {api} from './api.js';
import {poll, onEvents} from './live.js';

const STATES = ['available', 'running', 'scheduled', 'retryable', 'waiting', 'succeeded', 'discarded', 'cancelled'];
const BUCKET = 10000;
const fmt = v => (v === null || v === undefined ? '–' : `${num(v)} ms`);
const SPAN = 60 * 60 * 1000;
const empty = () => ({enq: 0, ok: 0, bad: 0});

/** The chart's intervals: the store's hour, then live events counted on top. */
function throughputBuckets() {
  const buckets = new Map();
  // Events seen before the history arrived wait here; those it already counts
  // (before its read) are then dropped.
  let pending = [];
  let readAt = null;
  const add = (at, kind) => {
    const b = Math.floor(at / BUCKET) * BUCKET;
    let e = buckets.get(b);
    if (!e) { e = empty(); buckets.set(b, e); }
    // "failed" as the store counts it: jobs dead-lettered (not attempts retried).
    if (kind === 'job.enqueued') e.enq++;
    else if (kind === 'job.succeeded') e.ok++;
    else if (kind === 'job.discarded') e.bad++;
  };
  const prune = () => { for (const k of buckets.keys()) if (k < Date.now() - SPAN) buckets.delete(k); };
  return {
    buckets,
    loaded: () => readAt !== null,
    /** A live event: counted unless the history read after it already holds it. */
    event(ev) {
      const at = typeof ev.at === 'number' ? ev.at : Date.now();
      if (readAt === null) pending.push([at, ev.kind]);
      else if (at >= readAt) add(at, ev.kind);
      prune();
    },
    /** The store's hour (GET /stats/throughput), once. */
    history(view) {
      for (const i of view.intervals) {
        let e = buckets.get(i.at);
        if (!e) { e = empty(); buckets.set(i.at, e); }
        e.enq += i.enqueued; e.ok += i.succeeded; e.bad += i.failed;
      }
      readAt = view.read_at;
      for (const [at, kind] of pending) if (at >= readAt) add(at, kind);
      pending = [];
      prune();
    },
    series(field) {
      const now = Math.floor(Date.now() / BUCKET) * BUCKET;
      const pts = [];
      for (let t = now - SPAN + BUCKET; t < now; t += BUCKET) {
        const e = buckets.get(t);
        pts.push([t + BUCKET, e ? e[field] / (BUCKET / 1000) : 0]);
      }
      return pts;
    },
    total(field) { let n = 0; for (const e of buckets.values()) n += e[field]; return n; },
  };
}

export async function render(main) {
  const cards = h('div', {class: 'cards', id: 'overview-cards'});
  const chart = h('div', {class: 'panel', id: 'throughput'});
  const tp = throughputBuckets();
  const states = h('div', {});
  const latency = h('div', {class: 'panel', id: 'latency'});
  const incidents = h('div', {class: 'panel', id: 'incidents'});
  put(main, h('h1', {}, 'Overview'), cards,
    h('h2', {}, 'Throughput (per second, 10 s intervals, last hour: from the store, then live)'), chart,
    h('h2', {}, 'Queue wait and run time, whole cluster (p50, p99 per minute, last hour)'), latency,
    h('h2', {}, 'Rescues, worker crashes and restarts, evictions (per minute, last hour, whole cluster)'), incidents,
    h('h2', {}, 'Jobs by state'), states);

  const stopLatency = poll(async () => {
    let view;
    try {
      view = await api('/stats/latency');
    } catch (e) {
      put(latency, h('p', {class: 'muted'}, e.status === 403 ? 'The latency spans every queue: it needs a token not limited to queues.' : `latency: ${e.message}`));
      return;
    }
    const pts = field => view.minutes.filter(m => m[field] !== null && m[field] !== undefined).map(m => [m.at + 60000, m[field]]);
    const busy = view.minutes.filter(m => m.jobs > 0);
    const last = busy[busy.length - 1];
    const sampled = view.minutes.some(m => m.sampled);
    put(latency,
      busy.length === 0 ? h('p', {class: 'muted', id: 'latency-empty'}, 'No job finished in the last hour.') :
        lineChart([
          {name: 'wait p50', cls: 'l-acc', points: pts('wait_p50_ms')},
          {name: 'wait p99', cls: 'l-bad', points: pts('wait_p99_ms')},
          {name: 'run p50', cls: 'l-ok', points: pts('run_p50_ms')},
          {name: 'run p99', cls: 'l-ok dashed', points: pts('run_p99_ms')},
        ], 3600 * 1000, ' ms'),
      h('div', {class: 'legend muted'},
        h('span', {class: 's-available'}, '— wait p50'), h('span', {class: 's-discarded'}, '— wait p99'),
        h('span', {class: 's-succeeded'}, '— run p50, - - run p99')),
      last ? h('p', {class: 'muted', id: 'latency-latest', dataset: {jobs: busy.reduce((a, m) => a + m.jobs, 0)}},
        `minute of ${new Date(last.at).toLocaleTimeString()}: ${num(last.jobs)} job(s), wait p50 ${fmt(last.wait_p50_ms)}, p99 ${fmt(last.wait_p99_ms)}; run p50 ${fmt(last.run_p50_ms)}, p99 ${fmt(last.run_p99_ms)}`,
        sampled ? ` · busy minutes are sampled (${num(view.per_minute)} jobs spread over each)` : '',
        ` · read ${ago(view.read_at)}`) : null);
  }, 15000);

  // Incidents per minute of the hour, from the store's events (one shared read per
  // api.counts_max_age for every viewer); the cards show the hour's totals as rates.
  let hour = null;
  const stopIncidents = poll(async () => {
    try {
      hour = await api('/stats/incidents');
    } catch (e) {
      hour = null;
      put(incidents, h('p', {class: 'muted'}, e.status === 403 ? 'Incidents span every queue: they need a token not limited to queues.' : `incidents: ${e.message}`));
      return;
    }
    const t = hour.total;
    Object.assign(incidents.dataset, {
      rescued: t.rescued, crashed: t.worker_crashed, restarted: t.worker_restarted, evicted: t.node_evicted,
    });
    // Every minute of the hour, a minute without incidents at 0.
    const by = new Map(hour.minutes.map(m => [m.at, m]));
    const pts = field => {
      const out = [];
      for (let at = hour.since; at <= hour.read_at; at += 60000) out.push([at + 60000, by.has(at) ? by.get(at)[field] : 0]);
      return out;
    };
    put(incidents,
      hour.minutes.length === 0 ? h('p', {class: 'muted', id: 'incidents-empty'}, 'No rescue, crash, restart or eviction in the last hour.') :
        lineChart([
          {name: 'rescued', cls: 'l-acc', points: pts('rescued')},
          {name: 'crashed', cls: 'l-bad', points: pts('worker_crashed')},
          {name: 'restarted', cls: 'l-ok', points: pts('worker_restarted')},
          {name: 'evicted', cls: 'l-bad dashed', points: pts('node_evicted')},
        ], SPAN, '/min'),
      h('div', {class: 'legend muted'},
        h('span', {class: 's-available'}, `— ${num(t.rescued)} job(s) rescued`),
        h('span', {class: 's-discarded'}, `— ${num(t.worker_crashed)} worker crash(es)`),
        h('span', {class: 's-succeeded'}, `— ${num(t.worker_restarted)} restart(s)`),
        h('span', {class: 's-discarded'}, `- - ${num(t.node_evicted)} eviction(s) recorded`)),
      h('p', {class: 'muted'}, `read ${ago(hour.read_at)}`));
  }, 15000);
  const perHour = field => (hour ? `${num(hour.total[field])} / h` : '–');

  const drawChart = () => {
    // Totals over the hour shown, for readers (and tests) of the page.
    Object.assign(chart.dataset, {
      history: tp.loaded() ? 'loaded' : 'waiting',
      enqueued: tp.total('enq'), succeeded: tp.total('ok'), failed: tp.total('bad'),
    });
    put(chart,
      lineChart([
        {name: 'enqueued', cls: 'l-acc', points: tp.series('enq')},
        {name: 'succeeded', cls: 'l-ok', points: tp.series('ok')},
        {name: 'failed', cls: 'l-bad', points: tp.series('bad')},
      ], SPAN),
      h('div', {class: 'legend muted'},
        h('span', {class: 's-available'}, '— enqueued'), h('span', {class: 's-succeeded'}, '— succeeded'),
        h('span', {class: 's-discarded'}, '— failed (dead-lettered)')),
      historyError ? h('p', {class: 'error'}, `the last hour could not be read (${historyError}): live events only`)
        : tp.loaded() ? null : h('p', {class: 'muted'}, 'reading the last hour…'));
  };

  let historyError = null;
  const unsubscribe = onEvents(ev => tp.event(ev));
  api('/stats/throughput?interval=10&minutes=60')
    .then(view => tp.history(view))
    .catch(e => { historyError = e.message; tp.history({intervals: [], read_at: 0}); })
    .then(drawChart);
  const stopChart = poll(async () => drawChart(), 5000);

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
    put(cards,
      card('finished / s (last minute)', perSecond.toFixed(2)),
      card('available', num(total.available || 0)),
      card('running', num(total.running || 0)),
      card('dead letters', num(total.discarded || 0), h('a', {href: '#/dlq'}, 'open')),
      card('nodes up', up === null ? '–' : `${up} / ${n.nodes.length}`),
      card('rescues (last hour)', perHour('rescued')),
      card('worker restarts (last hour)', perHour('worker_restarted')),
      m ? card('mesh', m.quorum ? 'quorum' : 'NO QUORUM',
        h('span', {class: 'muted'}, ` ${m.members.length} members`)) : null,
      h('div', {class: 'card muted'}, `counts as of ${ago(q.counts_at)}`));
    put(states, h('div', {class: 'cards'}, STATES.map(s =>
      h('a', {class: 'card', href: `#/jobs?state=${s}`}, h('div', {class: 'n'}, num(total[s] || 0)), h('div', {class: `l s-${s}`}, s)))));
  }, 5000);
  return () => { unsubscribe(); stopChart(); stopPoll(); stopLatency(); stopIncidents(); };
}
