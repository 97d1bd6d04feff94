// Events: the lifecycle log as it happens, filtered by kind, job and node.

import {h, put, table, badge, time} from './dom.js';
import {onEvents, onStreamStatus} from './live.js';

const KEEP = 500;

export async function render(main, {params}) {
  const kept = [];
  let paused = false;
  const filter = {kind: params.get('kind') || '', job: params.get('job') || '', node: params.get('node') || ''};
  const status = h('span', {class: 'muted', id: 'stream-status'}, 'connecting…');
  const input = (name, placeholder) => {
    const i = h('input', {name, value: filter[name], placeholder});
    i.addEventListener('input', () => { filter[name] = i.value.trim(); draw(); });
    return i;
  };
  const pause = h('button', {type: 'button', on: {click: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; draw(); }}}, 'Pause');
  const body = h('div', {id: 'event-table'});
  put(main, h('h1', {}, 'Events'),
    h('div', {class: 'toolbar'},
      h('label', {}, 'Kind starts with', input('kind', 'job.failed, node.')),
      h('label', {}, 'Job', input('job', 'id')),
      h('label', {}, 'Node', input('node', 'name')),
      pause, status),
    body);

  const matches = e => (!filter.kind || e.kind.startsWith(filter.kind)) &&
    (!filter.job || String(e.job) === filter.job) &&
    (!filter.node || (e.node || '').includes(filter.node));

  function draw() {
    if (paused) return;
    const rows = kept.filter(matches).slice(-200).reverse();
    put(body, table([
      ['Seq', e => String(e.seq), 'num'],
      ['At', e => time(e.at)],
      ['Kind', e => badge(e.kind, 'k-')],
      ['Job', e => (e.job ? h('a', {href: `#/jobs/${e.job}`}, String(e.job)) : '–'), 'num'],
      ['Attempt', e => (e.attempt ? String(e.attempt) : ''), 'num hide-narrow'],
      ['Node', e => e.node || '', 'wrap'],
      ['Worker', e => e.worker || '', 'wrap hide-narrow'],
      ['Detail', e => (e.detail && Object.keys(e.detail).length ? h('code', {class: 'detail'}, JSON.stringify(e.detail).slice(0, 300)) : ''), 'wrap'],
    ], rows, 'Waiting for events… (new ones appear here as they happen)'));
  }
  draw();
  onStreamStatus(st => { status.textContent = st; });
  const unsubscribe = onEvents(e => {
    kept.push(e);
    if (kept.length > KEEP) kept.shift();
    draw();
  });
  return () => { unsubscribe(); onStreamStatus(() => {}); };
}
