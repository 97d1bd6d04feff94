// One job: its fields, payload and output (pretty, collapsible), every attempt, the
// event timeline, its parents, and the actions its state allows.

import {h, s, put, table, badge, time, duration, json, confirmDialog} from './dom.js';
import {api} from './api.js';
import {poll, onEvents, debounce} from './live.js';

const UNFINISHED = ['waiting', 'scheduled', 'available', 'running', 'retryable'];
const FINISHED = ['succeeded', 'discarded', 'cancelled'];

/** Parents above, this job below: the part of the workflow the API shows of it. */
function dag(job) {
  if (!job.depends_on.length) return null;
  const W = 130, H = 30, GAP = 20;
  const n = job.depends_on.length;
  const width = Math.max(n * (W + GAP), W + GAP);
  const cx = width / 2;
  return s('svg', {class: 'dag', viewBox: `0 0 ${width} 130`, role: 'img'},
    job.depends_on.map((p, i) => {
      const x = i * (W + GAP) + GAP / 2;
      return s('g', {},
        s('path', {d: `M${x + W / 2},${10 + H} C${x + W / 2},70 ${cx},60 ${cx},90`}),
        s('a', {href: `#/jobs/${p}`}, s('rect', {x, y: 10, width: W, height: H, rx: 5}),
          s('text', {x: x + 8, y: 29}, `parent ${p}`)));
    }),
    s('g', {class: 'cur'}, s('rect', {x: cx - W / 2, y: 90, width: W, height: H, rx: 5}),
      s('text', {x: cx - W / 2 + 8, y: 109}, `job ${job.id} · ${job.kind}`.slice(0, 22))));
}

export async function render(main, {me, id}) {
  const err = h('p', {class: 'error', role: 'alert'});
  const body = h('div', {});
  put(main, h('p', {}, h('a', {href: '#/jobs'}, '← Jobs')), err, body);
  let payloadOpen = true;

  const act = async (label, path, method, reqBody) => {
    if (!await confirmDialog(`${label} job ${id}?`, label)) return;
    try {
      const r = await api(path, {method, body: reqBody});
      err.textContent = '';
      if (method === 'DELETE' && r && r.changed) { location.hash = '#/jobs'; return; }
    } catch (e) {
      err.textContent = `${label}: ${e.message}`;
    }
    await load();
  };

  const load = async () => {
    const d = await api(`/jobs/${encodeURIComponent(id)}?events=200`);
    const j = d.job || d;
    const buttons = [];
    if (me.may.operate && (!me.queues.length || me.queues.includes(j.queue))) {
      if (UNFINISHED.includes(j.state)) buttons.push(h('button', {type: 'button', class: 'danger', id: 'job-cancel', on: {click: () => act('Cancel', `/jobs/${j.id}/cancel`, 'POST', {})}}, 'Cancel'));
      if (['scheduled', 'retryable'].includes(j.state)) buttons.push(h('button', {type: 'button', id: 'job-retry', on: {click: () => act('Retry now', `/jobs/${j.id}/retry`, 'POST', {})}}, 'Retry now'));
      if (j.state === 'discarded') buttons.push(h('button', {type: 'button', id: 'job-redrive', on: {click: () => act('Redrive', '/dlq/redrive', 'POST', {ids: [j.id]})}}, 'Redrive'));
      if (FINISHED.includes(j.state)) buttons.push(h('button', {type: 'button', class: 'danger', id: 'job-delete', on: {click: () => act('Delete', `/jobs/${j.id}`, 'DELETE')}}, 'Delete'));
    }
    const payload = h('details', {open: payloadOpen, id: 'payload'}, h('summary', {}, 'Payload'), json(j.payload));
    payload.addEventListener('toggle', () => { payloadOpen = payload.open; });
    const fields = [
      ['Queue', h('span', {class: 'queue'}, j.queue)], ['Kind', h('span', {class: 'kind'}, j.kind)],
      ['Priority', String(j.priority)], ['Attempt', `${j.attempt} of ${j.max_attempts}`],
      ['Run at', time(j.run_at)], ['Enqueued', time(j.created_at)], ['Finished', time(j.finished_at)],
      ['Timeout', duration(j.timeout_ms)], ['Unique key', j.unique_key || '–'],
      ['Lease', j.state === 'running' && j.lease_owner ? `${j.lease_owner} on ${j.lease_node || '?'} until ` : '–',
        j.state === 'running' && j.lease_expires_at ? time(j.lease_expires_at) : null],
      ['Parents', j.depends_on.length ? j.depends_on.map(p => [h('a', {href: `#/jobs/${p}`}, String(p)), ' ']) : '–'],
      ['On parent failure', j.on_parent_failure],
    ];
    put(body,
      h('h1', {}, `Job ${j.id} `, badge(j.state)),
      h('div', {class: 'row'}, buttons),
      j.last_error ? h('div', {class: 'panel'}, h('strong', {}, 'Last error'), h('pre', {class: 'error last-error'}, j.last_error)) : null,
      h('div', {class: 'table-wrap'}, h('table', {class: 'fields'}, h('tbody', {}, fields.map(([k, ...v]) => h('tr', {}, h('th', {}, k), h('td', {class: 'wrap'}, v)))))),
      dag(j),
      payload,
      j.output !== null && j.output !== undefined ? h('details', {open: true}, h('summary', {}, 'Output'), json(j.output)) : null,
      h('h2', {}, 'Attempts'),
      table([
        ['#', a => String(a.attempt), 'num'],
        ['Outcome', a => badge(a.outcome)],
        ['Node', a => a.node || '–'],
        ['Worker', a => a.worker || '–'],
        ['Started', a => time(a.started_at), 'hide-narrow'],
        ['Took', a => duration(a.duration_ms), 'num'],
        ['Error', a => h('span', {class: 'attempt-error'}, a.error || ''), 'wrap'],
      ], d.attempts || [], 'No finished attempt yet.'),
      d.attempts_truncated ? h('p', {class: 'muted'}, 'Older attempts are not shown.') : null,
      h('h2', {}, 'Timeline'),
      h('ol', {class: 'timeline'}, (d.events || []).map(e => h('li', {},
        time(e.at), ' ', badge(e.kind.replace('job.', ''), 's-'),
        e.attempt ? ` attempt ${e.attempt}` : '', e.node ? ` · ${e.node}` : '', e.worker ? ` · ${e.worker}` : '',
        e.detail && Object.keys(e.detail).length ? h('details', {}, h('summary', {}, 'detail'), json(e.detail)) : null))),
      d.events_truncated ? h('p', {class: 'muted'}, 'The timeline was cut at 200 events.') : null);
  };

  const refresh = debounce(() => load().catch(e => { err.textContent = e.message; }), 300);
  const unsubscribe = onEvents(ev => { if (String(ev.job) === String(id)) refresh(); });
  const stop = poll(() => load().catch(e => { err.textContent = e.message; }), 15000);
  return () => { unsubscribe(); stop(); };
}
