// One job: its fields, payload and output (pretty, collapsible), every attempt, the
// event timeline, the workflow around it (parents and children, drawn as a graph), and
// the actions its state allows.

import {h, s, put, table, badge, time, duration, json, confirmDialog} from './dom.js';
import {api} from './api.js';
import {poll, onEvents, debounce} from './live.js';

const UNFINISHED = ['waiting', 'scheduled', 'available', 'running', 'retryable'];
const FINISHED = ['succeeded', 'discarded', 'cancelled'];

const GRAPH_JOBS = 200;

/** Layers of a DAG: each job one below its lowest parent among the jobs shown. */
function layers(jobs, links) {
  const parents = new Map(jobs.map(j => [j.id, []]));
  for (const l of links) if (parents.has(l.child) && parents.has(l.parent)) parents.get(l.child).push(l.parent);
  const depth = new Map();
  const visit = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0; // a cycle cannot be stored, but never loop on one
    seen.add(id);
    const d = Math.max(-1, ...parents.get(id).map(p => visit(p, seen))) + 1;
    depth.set(id, d);
    return d;
  };
  for (const j of jobs) visit(j.id, new Set());
  const rows = [];
  for (const j of jobs) (rows[depth.get(j.id)] ||= []).push(j);
  return {rows, depth};
}

/** The workflow around the job as an SVG graph built node by node (text only), each
 * job a link to its page; parents above children. */
function graph(g, id) {
  if (g.jobs.length < 2) return null;
  const W = 150, H = 30, GX = 16, GY = 36;
  const {rows} = layers(g.jobs, g.links);
  const widest = Math.max(...rows.map(r => r.length));
  const width = widest * (W + GX) + GX;
  const height = rows.length * (H + GY) + GY / 2;
  const at = new Map();
  rows.forEach((row, r) => {
    const offset = (width - row.length * (W + GX) + GX) / 2;
    row.forEach((j, i) => at.set(j.id, {x: offset + i * (W + GX), y: GY / 2 + r * (H + GY)}));
  });
  const edges = g.links.filter(l => at.has(l.parent) && at.has(l.child)).map(l => {
    const p = at.get(l.parent), c = at.get(l.child);
    const x1 = p.x + W / 2, y1 = p.y + H, x2 = c.x + W / 2, y2 = c.y;
    return s('path', {d: `M${x1},${y1} C${x1},${y1 + GY / 2} ${x2},${y2 - GY / 2} ${x2},${y2}`});
  });
  const nodes = g.jobs.map(j => {
    const p = at.get(j.id);
    const label = j.kind === null ? `#${j.id}` : `#${j.id} ${j.kind}`;
    const state = j.state ? String(j.state).replace(/[^a-z_]/g, '') : 'hidden';
    return s('a', {href: `#/jobs/${j.id}`, 'data-job': j.id, class: `gnode st-${state}${String(j.id) === String(id) ? ' cur' : ''}`},
      s('title', {}, j.kind === null ? `job ${j.id} (not visible to this token)` : `job ${j.id} · ${j.kind} · ${j.queue} · ${j.state}`),
      s('rect', {x: p.x, y: p.y, width: W, height: H, rx: 5}),
      s('text', {x: p.x + 8, y: p.y + 19}, label.length > 22 ? `${label.slice(0, 21)}…` : label));
  });
  return h('div', {class: 'dag-wrap', id: 'job-graph'},
    s('svg', {class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img'}, edges, nodes),
    h('p', {class: 'muted', id: 'job-graph-note'},
      `${g.jobs.length} job(s) of the workflow, ${g.links.length} link(s); parents above children.`,
      g.truncated ? ` Cut at ${g.max_jobs} jobs: more of the workflow is linked beyond them.` : ''));
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
    const [d, g] = await Promise.all([
      api(`/jobs/${encodeURIComponent(id)}?events=200`),
      api(`/jobs/${encodeURIComponent(id)}/graph?max_jobs=${GRAPH_JOBS}`).catch(() => null),
    ]);
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
      g ? graph(g, j.id) : null,
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
