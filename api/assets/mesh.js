// The mesh as the node serving the dashboard sees it: every member around it, coloured
// by state (alive, suspected, evicted), the phi and round trip of each on hover, the
// Down votes held against each and the signers of each eviction certificate; the
// membership events as they arrive.

import {h, s, put, table, badge, num, time, json} from './dom.js';
import {api, ApiError} from './api.js';
import {poll, onEvents, debounce} from './live.js';

const short = p => (p.length > 14 ? `…${p.slice(-8)}` : p);
const KNOWN = ['self', 'alive', 'suspected', 'evicted'];
const recent = [];

function graph(m) {
  const W = 640, H = 420, cx = W / 2, cy = H / 2, R = 160;
  const others = m.members.filter(x => x.peer !== m.me);
  const pos = new Map([[m.me, [cx, cy]]]);
  others.forEach((x, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, others.length);
    pos.set(x.peer, [cx + R * Math.cos(a), cy + R * Math.sin(a)]);
  });
  const kind = st => `k-${KNOWN.includes(st) ? st : 'other'}`;
  const tip = x => [
    `${x.peer}`, `state: ${x.state}`, `incarnation: ${x.incarnation}`,
    `phi: ${x.phi === null ? 'no samples' : x.phi.toFixed(2)}`,
    `round trip: ${x.rtt_ms === null ? '–' : `${x.rtt_ms.toFixed(1)} ms`}`,
    `Down votes held here: ${x.down_votes}`,
    x.evicted_by.length ? `evicted by: ${x.evicted_by.join(', ')}` : null,
  ].filter(Boolean).join('\n');
  return s('svg', {class: 'mesh', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'mesh members'},
    s('title', {}, `Members as ${m.me} sees them`),
    others.map(x => {
      const [x2, y2] = pos.get(x.peer);
      return s('line', {class: `edge ${kind(x.state)}`, x1: cx, y1: cy, x2, y2, 'stroke-dasharray': x.state === 'alive' ? null : '6 4'},
        s('title', {}, `${short(m.me)} observes ${short(x.peer)}: phi ${x.phi === null ? '–' : x.phi.toFixed(2)}`));
    }),
    m.members.map(x => {
      const [px, py] = pos.get(x.peer) || [cx, cy];
      const self = x.peer === m.me;
      const r = 14 + Math.min(10, (x.phi || 0));
      return s('g', {class: 'member', dataset: {peer: x.peer, state: x.state}},
        s('circle', {cx: px, cy: py, r: self ? 22 : r, class: kind(self ? 'self' : x.state)}, s('title', {}, tip(x))),
        s('text', {x: px, y: py + (self ? 38 : r + 16), 'text-anchor': 'middle'}, `${short(x.peer)}${self ? ' (this node)' : ''}`),
        x.down_votes ? s('text', {x: px, y: py + 4, 'text-anchor': 'middle'}, `${x.down_votes}✗`) : null);
    }));
}

export async function render(main) {
  const err = h('p', {class: 'error', role: 'alert'});
  const head = h('div', {class: 'cards'});
  const pic = h('div', {class: 'panel'});
  const members = h('div', {id: 'mesh-members'});
  const events = h('div', {});
  put(main, h('h1', {}, 'Mesh'), err, head, pic, h('h2', {}, 'Members'), members,
    h('h2', {}, 'Membership events (live)'), events);

  const drawEvents = () => put(events, recent.length
    ? h('ol', {class: 'timeline'}, recent.slice().reverse().map(e => h('li', {},
      time(e.at), ' ', badge(e.kind.replace('node.', '')), ' ', e.node || '',
      e.detail && Object.keys(e.detail).length ? h('details', {}, h('summary', {}, 'certificate and detail'), json(e.detail)) : null)))
    : h('p', {class: 'muted'}, 'None since this page opened.'));
  drawEvents();

  const load = async () => {
    let m;
    try {
      m = await api('/mesh');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        put(head); put(pic, h('p', {class: 'muted'}, e.message)); put(members);
        return;
      }
      throw e;
    }
    err.textContent = '';
    const by = st => m.members.filter(x => x.state === st).length;
    put(head,
      h('div', {class: 'card'}, h('div', {class: 'n mono'}, short(m.me)), h('div', {class: 'l'}, `this node · incarnation ${m.incarnation} · epoch ${m.epoch}`)),
      h('div', {class: 'card'}, h('div', {class: `n ${m.quorum ? 's-alive' : 's-evicted'}`}, m.quorum ? 'quorum' : 'no quorum'), h('div', {class: 'l'}, m.quorum ? 'it votes and applies certificates' : 'it stops evicting')),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${by('alive')} / ${by('suspected')} / ${by('evicted')}`), h('div', {class: 'l'}, 'alive / suspected / evicted')),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${num(Math.round(m.bytes_in / 1024))} / ${num(Math.round(m.bytes_out / 1024))} KiB`), h('div', {class: 'l'}, 'mesh traffic in / out since start')),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${num(m.refused_inputs)} · ${num(m.bans)}`), h('div', {class: 'l'}, `refused inputs · bans · ${m.outsider_connections} outsider connection(s)`)));
    put(pic, graph(m), h('p', {class: 'muted'}, 'Hover a member for its phi, round trip, votes and certificate. Dashed: not alive. ✗: Down votes held here.'));
    put(members, table([
      ['Peer', x => h('span', {class: 'mono', title: x.peer}, x.peer)],
      ['State', x => badge(x.state)],
      ['Incarnation', x => String(x.incarnation), 'num'],
      ['Phi', x => (x.phi === null ? '–' : x.phi.toFixed(2)), 'num'],
      ['RTT', x => (x.rtt_ms === null ? '–' : `${x.rtt_ms.toFixed(1)} ms`), 'num hide-narrow'],
      ['Heard', x => (x.heard ? 'yes' : 'no'), 'hide-narrow'],
      ['Down votes', x => String(x.down_votes), 'num'],
      ['Evicted by (certificate signers)', x => x.evicted_by.length ? x.evicted_by.map(p => h('div', {class: 'mono', title: p}, short(p))) : '–'],
    ], m.members, 'No members.', x => ({dataset: {peer: x.peer, state: x.state}})));
  };
  const safe = () => load().catch(e => { err.textContent = e.message; });
  const refresh = debounce(safe, 300);
  const unsubscribe = onEvents(ev => {
    if (!ev.kind.startsWith('node.')) return;
    recent.push(ev);
    if (recent.length > 50) recent.shift();
    drawEvents();
    refresh();
  });
  const stop = poll(safe, 2000);
  return () => { unsubscribe(); stop(); };
}
