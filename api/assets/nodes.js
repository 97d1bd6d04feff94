// Nodes and their workers: state, last heartbeat, slots, running jobs, restarts and
// crashes, and each worker's current job.

import {h, put, table, badge, ago, num} from './dom.js';
import {api} from './api.js';
import {poll} from './live.js';

export async function render(main) {
  const err = h('p', {class: 'error', role: 'alert'});
  const body = h('div', {});
  put(main, h('h1', {}, 'Nodes'), err, body);
  const load = async () => {
    const n = await api('/nodes');
    err.textContent = '';
    put(body,
      h('p', {class: 'muted'}, `From the newest ${num(n.events_read)} node and worker events (window ${num(n.events_window)}); live heartbeats: ${n.heartbeats}.${n.running_truncated ? ' More jobs run than were read: running counts are low.' : ''}`),
      n.nodes.length ? n.nodes.map(node => h('div', {class: 'panel', dataset: {node: node.id}},
        h('div', {class: 'row'}, h('strong', {class: 'mono'}, node.id), badge(node.state),
          h('span', {class: 'muted last-heartbeat'}, node.last_heartbeat ? `last heartbeat ${ago(node.last_heartbeat)}` : 'no heartbeat row'),
          h('span', {class: 'muted'}, ` · last event ${ago(node.last_seen)}`),
          node.heartbeat_until ? h('span', {class: 'muted'}, ` · heartbeat valid ${ago(node.heartbeat_until).replace(' ago', '')}`) : null,
          h('span', {class: 'muted node-load'}, ` · ${num(node.running || 0)} running / ${node.slots == null ? '?' : num(node.slots)} slot(s), ${node.workers.reduce((a, w) => a + w.restarts, 0)} restart(s)`)),
        (node.queues || []).length ? h('p', {class: 'muted'}, 'Serves: ', node.queues.map((q, i) => [i ? ', ' : '', h('span', {class: 'mono'}, q)])) : null,
        table([
          ['Worker', w => h('span', {class: 'mono'}, w.id)],
          ['State', w => badge(w.state)],
          ['Current job', w => w.current_job
            ? [h('a', {href: `#/jobs/${encodeURIComponent(String(w.current_job.id))}`, class: 'current-job'}, `#${w.current_job.id}`),
              ' ', h('span', {class: 'mono'}, w.current_job.kind), h('span', {class: 'muted'}, ` on ${w.current_job.queue}, since ${ago(w.current_job.started_at)}`)]
            : h('span', {class: 'muted'}, 'idle')],
          ['Restarts', w => String(w.restarts), 'num'],
          ['Crashes', w => String(w.crashes), 'num'],
          ['Last event', w => ago(w.last_event_at)],
        ], node.workers, 'No worker recorded.'))) : h('p', {class: 'muted'}, 'No node has recorded events yet.'));
  };
  return poll(() => load().catch(e => { err.textContent = e.message; }), 5000);
}
