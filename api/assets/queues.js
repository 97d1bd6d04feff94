// Queues: counts by state, oldest available job, throughput, the live nodes serving
// each, pause and resume.

import {h, put, table, badge, num, duration, ago} from './dom.js';
import {api} from './api.js';
import {poll} from './live.js';

const STALL_MS = 60000;

function allowed(me, queue) {
  return me.may.operate && (!me.queues.length || me.queues.includes(queue));
}

/** A queue with jobs to run (now or later) and no node whose presence is fresh serving it. */
function unserved(q) {
  const waiting = (q.counts.available || 0) + (q.counts.scheduled || 0) + (q.counts.retryable || 0);
  return waiting > 0 && !(q.served_by || []).length;
}

/** A served queue with runnable jobs that nobody finished for a minute, not paused. */
function stalled(q) {
  return !q.paused && !unserved(q) && (q.counts.available || 0) > 0 && !(q.counts.running > 0) &&
    q.throughput.finished === 0 && (q.oldest_available_age_ms || 0) > STALL_MS;
}

export async function render(main, {me}) {
  const body = h('div', {id: 'queues'});
  const note = h('p', {class: 'muted'});
  const err = h('p', {class: 'error', role: 'alert'});
  put(main, h('h1', {}, 'Queues'), err, body, note);
  let refresh;
  const act = async (q, verb) => {
    try {
      await api(`/queues/${encodeURIComponent(q)}/${verb}`, {method: 'POST', body: {}});
      err.textContent = '';
    } catch (e) {
      err.textContent = `${verb} ${q}: ${e.message}`;
    }
    await refresh();
  };
  refresh = async () => {
    const list = await api('/queues');
    const cols = [
      ['Queue', q => h('a', {href: `#/jobs?queue=${encodeURIComponent(q.name)}`, class: 'queue-name'}, q.name)],
      ['State', q => [q.paused ? badge('paused') : badge('active', 'x-'),
        unserved(q) ? h('span', {class: 'warn unserved', title: 'No node whose presence is fresh (written within three of its refresh intervals) claims from this queue: its jobs wait until one does.'}, ' ⚠ no live node serves this queue') : null,
        stalled(q) ? h('span', {class: 'warn stalled', title: 'Jobs have waited over a minute and none ran or finished in the last minute, though a live node serves this queue.'}, ' ⚠ no progress') : null]],
      ['Served by', q => (q.served_by || []).length
        ? (q.served_by || []).map((n, i) => [i ? ', ' : '', h('span', {class: 'mono'}, n)])
        : h('span', {class: 'muted'}, 'none'), 'hide-narrow'],
      ['Available', q => num(q.counts.available || 0), 'num'],
      ['Running', q => num(q.counts.running || 0), 'num'],
      ['Scheduled', q => num((q.counts.scheduled || 0) + (q.counts.retryable || 0) + (q.counts.waiting || 0)), 'num hide-narrow'],
      ['Succeeded', q => num(q.counts.succeeded || 0), 'num hide-narrow'],
      ['Dead', q => num(q.counts.discarded || 0), 'num'],
      ['Oldest waiting', q => duration(q.oldest_available_age_ms), 'num hide-narrow'],
      ['Finished / s', q => q.throughput.per_second.toFixed(2), 'num'],
    ];
    if (me.may.operate) {
      cols.push(['', q => allowed(me, q.name)
        ? h('button', {type: 'button', class: q.paused ? 'resume' : 'pause danger', dataset: {queue: q.name},
            on: {click: () => act(q.name, q.paused ? 'resume' : 'pause')}}, q.paused ? 'Resume' : 'Pause')
        : null]);
    }
    put(body, table(cols, list.queues, 'No queue holds jobs yet.', q => ({dataset: {queue: q.name}})));
    put(note, `Counts as of ${ago(list.counts_at)}, ${list.counted_by === 'leader' ? 'by the cluster\'s maintenance leader' : 'by this API process'} (shared by every viewer); pauses are current.`);
  };
  return poll(refresh, 5000);
}
