// The mesh as the node serving the dashboard sees it: every member on a ring, coloured by
// state (alive, suspected, evicted), an arrow from each observer to each member it
// observes, red arrows for the Down votes held and the signatures of each eviction
// certificate; on hover a member's phi, incarnation, votes and traffic. The table below
// lists the same per member with the jobs each eviction re-queued, read from the
// `node.evicted` events that arrive while the page is open; a `node.suspected` event
// marks its member suspected at once, before this node's view is read again. The
// membership events run underneath.

import {h, s, put, table, badge, num, time, json} from './dom.js';
import {api, ApiError} from './api.js';
import {poll, onEvents, debounce} from './live.js';

const short = p => (p.length > 14 ? `…${p.slice(-8)}` : p);
const KNOWN = ['self', 'alive', 'suspected', 'evicted'];
const kind = st => `k-${KNOWN.includes(st) ? st : 'other'}`;
const recent = [];
// Per evicted peer, the jobs its eviction re-queued, gathered from every member's
// `node.evicted` event (each job is named by the one member whose revocation took it).
const rescues = new Map();
const MAX_RESCUES = 256;

// Per member, who suspected which incarnation of it lately, from `node.suspected` events:
// a suspicion is often over (the member evicted) before this node's view is read again,
// so the picture shows it as soon as the event arrives, for SUSPICION_SHOWN_MS.
const suspicions = new Map();
const SUSPICION_SHOWN_MS = 15000;

function noteSuspicion(ev) {
  const d = ev.detail;
  if (ev.kind !== 'node.suspected' || !ev.node || !d) return;
  let r = suspicions.get(ev.node);
  if (!r || r.incarnation !== d.incarnation) {
    r = {incarnation: d.incarnation, by: new Set(), at: 0};
    suspicions.delete(ev.node);
    suspicions.set(ev.node, r);
    if (suspicions.size > MAX_RESCUES) suspicions.delete(suspicions.keys().next().value);
  }
  if (d.by) r.by.add(String(d.by));
  r.at = Date.now();
}

// The member as drawn: this node's view, marked suspected when other members suspect
// its current incarnation lately though this node does not (yet).
function withSuspicion(x, me) {
  const r = suspicions.get(x.peer);
  const fresh = r && r.incarnation === x.incarnation && Date.now() - r.at < SUSPICION_SHOWN_MS;
  const by = fresh ? [...r.by] : [];
  if (fresh && x.state === 'alive' && x.peer !== me) return {...x, state: 'suspected', here: 'alive', suspectedBy: by};
  return {...x, here: x.state, suspectedBy: by};
}

const kib = b => (b < 1024 ? `${num(b)} B` : `${num(Math.round(b / 1024))} KiB`);
const phiText = x => (x.phi === null || x.phi === undefined ? 'no samples' : x.phi.toFixed(2));

function noteRescue(ev) {
  const d = ev.detail;
  if (ev.kind !== 'node.evicted' || !ev.node || !d || !Array.isArray(d.requeued)) return;
  let r = rescues.get(ev.node);
  if (!r || r.incarnation !== d.incarnation) {
    r = {incarnation: d.incarnation, ids: new Set(), count: 0, discarded: new Set(), discardedCount: 0};
    rescues.delete(ev.node);
    rescues.set(ev.node, r);
    if (rescues.size > MAX_RESCUES) rescues.delete(rescues.keys().next().value);
  }
  for (const id of d.requeued) if (Number.isInteger(id)) r.ids.add(id);
  for (const id of d.discarded || []) if (Number.isInteger(id)) r.discarded.add(id);
  r.count += Number(d.requeued_count) || 0;
  r.discardedCount += Number(d.discarded_count) || 0;
}

// The rescue of `x`'s eviction, if it is evicted and one was seen for its incarnation.
const rescueOf = x => {
  const r = x.state === 'evicted' ? rescues.get(x.peer) : null;
  return r && r.incarnation === x.incarnation ? r : null;
};

const jobLinks = ids => [...ids].sort((a, b) => a - b).map(id => h('a', {href: `#/jobs/${id}`, class: 'mono'}, `#${id}`));

function tip(x, me) {
  const r = rescueOf(x);
  return [
    `${x.peer}${x.peer === me ? ' (this node)' : ''}`,
    `state: ${x.state}${x.here !== x.state ? ` (this node still sees it ${x.here})` : ''}`,
    x.suspectedBy.length ? `suspected lately by: ${x.suspectedBy.map(short).join(', ')}` : null,
    `incarnation: ${x.incarnation}`,
    `phi (as this node measures it): ${phiText(x)}`,
    `round trip: ${x.rtt_ms === null ? '–' : `${x.rtt_ms.toFixed(1)} ms`}`,
    x.state === 'evicted' ? null : `observed by ${x.observer_count} member(s)`,
    `Down votes held here: ${x.down_votes}${x.down_voters.length && x.state !== 'evicted' ? ` (${x.down_voters.map(short).join(', ')})` : ''}`,
    x.evicted_by.length ? `evicted by: ${x.evicted_by.map(short).join(', ')}` : null,
    r ? `jobs re-queued: ${r.count}${r.ids.size ? ` (${[...r.ids].slice(0, 10).map(i => `#${i}`).join(', ')}${r.ids.size > 10 ? ', …' : ''})` : ''}` : null,
    x.peer === me ? null : `traffic with this node: in ${kib(x.bytes_in)} · out ${kib(x.bytes_out)}`,
  ].filter(Boolean).join('\n');
}

// A curved arrow from `a` to `b` (each [x, y]) stopping `ra`/`rb` short of the circles:
// it bends to its right, so the arrows of two members observing each other do not
// overlap.
function arc(a, b, ra, rb, bend) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const len = Math.hypot(dx, dy) || 1;
  const ux = dx / len, uy = dy / len;
  const x1 = a[0] + ux * ra, y1 = a[1] + uy * ra;
  const x2 = b[0] - ux * rb, y2 = b[1] - uy * rb;
  const mx = (x1 + x2) / 2 - uy * bend, my = (y1 + y2) / 2 + ux * bend;
  const f = v => v.toFixed(1);
  return `M${f(x1)},${f(y1)} Q${f(mx)},${f(my)} ${f(x2)},${f(y2)}`;
}

function graph(m) {
  const W = 720, H = 500, cx = W / 2, cy = H / 2 - 6, R = 180;
  // A stable ring: members in id order, this node at the top.
  const ring = m.members.map(x => x.peer);
  const at = Math.max(0, ring.indexOf(m.me));
  const pos = new Map(), radius = new Map();
  ring.forEach((p, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * (i - at)) / Math.max(1, ring.length);
    pos.set(p, [cx + R * Math.cos(a), cy + R * Math.sin(a), a]);
  });
  for (const x of m.members) radius.set(x.peer, x.peer === m.me ? 22 : 15 + Math.min(8, x.phi || 0));

  const edges = [];
  const edge = (from, to, cls, label, bend) => {
    if (!pos.has(from) || !pos.has(to) || from === to) return;
    edges.push(s('path', {
      class: `edge ${cls}`, d: arc(pos.get(from), pos.get(to), radius.get(from) + 3, radius.get(to) + 5, bend),
      'marker-end': `url(#mk-${cls.split(' ')[0]})`, dataset: {from, to},
    }, s('title', {}, label)));
  };
  for (const x of m.members) {
    for (const o of x.observers) {
      const sus = x.state === 'suspected' ? ' to-suspected' : '';
      const phi = o === m.me ? `: phi ${phiText(x)}` : '';
      edge(o, x.peer, `observes${sus}`, `${short(o)} observes ${short(x.peer)}${phi}`, 14);
    }
    if (x.state === 'evicted') {
      for (const v of x.evicted_by) edge(v, x.peer, 'signed', `${short(v)} signed the certificate evicting ${short(x.peer)}`, 26);
    } else {
      for (const v of x.down_voters) edge(v, x.peer, 'down', `${short(v)} votes Down on ${short(x.peer)} (incarnation ${x.incarnation})`, 26);
    }
  }

  // Hovering a member brings its arrows forward and dims the rest.
  const focus = (svg, peer) => {
    svg.classList.toggle('focus', peer !== null);
    for (const e of svg.querySelectorAll('path.edge')) {
      e.classList.toggle('hl', peer !== null && (e.dataset.from === peer || e.dataset.to === peer));
    }
  };
  const marker = id => s('marker', {id: `mk-${id}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
    s('path', {d: 'M0,0 L10,5 L0,10 z', class: `mk mk-${id}`}));
  const svg = s('svg', {class: 'mesh', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'who observes whom in the mesh'},
    s('title', {}, `Members as ${m.me} sees them: arrows from observer to observed`),
    s('defs', {}, ['observes', 'down', 'signed'].map(marker)),
    s('g', {class: 'edges'}, edges),
    m.members.map(x => {
      const [px, py, a] = pos.get(x.peer);
      const self = x.peer === m.me;
      const r = radius.get(x.peer);
      // The label sits outside the ring, away from the arrows.
      const lx = px + Math.cos(a) * (r + 16), ly = py + Math.sin(a) * (r + 16) + 4;
      const anchor = Math.abs(Math.cos(a)) < 0.3 ? 'middle' : Math.cos(a) > 0 ? 'start' : 'end';
      return s('g', {class: `member${self ? ' me' : ''}`, dataset: {peer: x.peer, state: x.state}, tabindex: 0,
        on: {mouseenter: () => focus(svg, x.peer), mouseleave: () => focus(svg, null), focus: () => focus(svg, x.peer), blur: () => focus(svg, null)}},
        s('title', {}, tip(x, m.me)),
        s('circle', {cx: px, cy: py, r, class: kind(self ? 'self' : x.state)}),
        s('text', {x: lx, y: ly, 'text-anchor': anchor, class: 'label'}, `${short(x.peer)}${self ? ' (this node)' : ''}`),
        x.down_votes && x.state !== 'evicted' ? s('text', {x: px, y: py + 4, 'text-anchor': 'middle', class: 'votes'}, `${x.down_votes}✗`) : null,
        x.state === 'evicted' ? s('text', {x: px, y: py + 4, 'text-anchor': 'middle', class: 'votes'}, '✕') : null);
    }));
  return svg;
}

function legend() {
  const sw = (cls, text) => h('span', {class: 'item'}, h('span', {class: `swatch ${cls}`}), text);
  return h('div', {class: 'legend mesh-legend'},
    sw('k-self', 'this node'), sw('k-alive', 'alive'), sw('k-suspected', 'suspected'), sw('k-evicted', 'evicted'),
    sw('e-observes', 'observes (probes, votes about)'), sw('e-down', 'Down vote held here'), sw('e-signed', 'signed the eviction certificate'),
    h('span', {class: 'muted'}, 'Hover a member for its phi, incarnation, votes and traffic; ✗ counts Down votes held here.'));
}

const signerList = ps => (ps.length ? h('div', {class: 'signers'}, ps.map(p => h('div', {class: 'mono', title: p}, short(p)))) : '–');

export async function render(main) {
  const err = h('p', {class: 'error', role: 'alert'});
  const head = h('div', {class: 'cards'});
  const pic = h('div', {class: 'panel'});
  const members = h('div', {id: 'mesh-members'});
  const events = h('div', {});
  put(main, h('h1', {}, 'Mesh'), err, head, pic, h('h2', {}, 'Members'), members,
    h('h2', {}, 'Membership events (live)'), events);

  const drawEvents = () => put(events, recent.length
    ? h('ol', {class: 'timeline'}, recent.slice().reverse().map(e => {
      const d = e.detail || {};
      const by = d.by || d.seen_by;
      const more = e.kind === 'node.evicted' && Array.isArray(d.signers)
        ? ` · ${d.signers.length} signer(s)${typeof d.requeued_count === 'number' ? ` · ${d.requeued_count} job(s) re-queued by this member` : ''}`
        : '';
      return h('li', {},
        time(e.at), ' ', badge(e.kind.replace('node.', '')), ' ', h('span', {class: 'mono', title: e.node || ''}, short(e.node || '')),
        by ? h('span', {class: 'muted', title: String(by)}, ` seen by ${short(String(by))}`) : null, more,
        Object.keys(d).length ? h('details', {}, h('summary', {}, 'certificate and detail'), json(d)) : null);
    }))
    : h('p', {class: 'muted'}, 'None since this page opened.'));
  drawEvents();

  let last = null;
  const draw = view => {
    const m = {...view, members: view.members.map(x => withSuspicion(x, view.me))};
    const by = st => m.members.filter(x => x.state === st).length;
    put(head,
      h('div', {class: 'card'}, h('div', {class: 'n mono'}, short(m.me)), h('div', {class: 'l'}, `this node · incarnation ${m.incarnation} · epoch ${m.epoch}`)),
      h('div', {class: 'card'}, h('div', {class: `n ${m.quorum ? 's-alive' : 's-evicted'}`}, m.quorum ? 'quorum' : 'no quorum'), h('div', {class: 'l'}, m.quorum ? 'it votes and applies certificates' : 'it stops evicting')),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${by('alive')} / ${by('suspected')} / ${by('evicted')}`), h('div', {class: 'l'}, 'alive / suspected / evicted')),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${kib(m.bytes_in)} / ${kib(m.bytes_out)}`), h('div', {class: 'l'}, `mesh traffic in / out since start · outsiders ${kib(m.outsider_bytes_in || 0)} / ${kib(m.outsider_bytes_out || 0)}`)),
      h('div', {class: 'card'}, h('div', {class: 'n'}, `${num(m.refused_inputs)} · ${num(m.bans)}`), h('div', {class: 'l'}, `refused inputs · bans · ${m.outsider_connections} outsider connection(s)`)));
    put(pic, graph(m), legend());
    put(members, table([
      ['Peer', x => h('span', {class: 'mono nowrap', title: x.peer}, x.peer === m.me ? `${short(x.peer)} (this node)` : short(x.peer))],
      ['State', x => [badge(x.state), x.state === 'suspected' && x.suspectedBy.length
        ? h('div', {class: 'muted small', title: x.suspectedBy.join('\n')}, `by ${x.suspectedBy.map(short).join(', ')}${x.here !== x.state ? ` (here: ${x.here})` : ''}`) : null]],
      ['Incarnation', x => String(x.incarnation), 'num'],
      ['Phi', x => (x.phi === null ? '–' : x.phi.toFixed(2)), 'num'],
      ['RTT', x => (x.rtt_ms === null ? '–' : `${x.rtt_ms.toFixed(1)} ms`), 'num hide-narrow'],
      ['Observed by', x => (x.state === 'evicted' ? '–' : String(x.observer_count)), 'num hide-narrow'],
      ['Down votes (signers)', x => (x.state === 'evicted' ? '–' : [String(x.down_votes), x.down_voters.length ? signerList(x.down_voters) : null]), 'downs'],
      ['Evicted by (certificate signers)', x => signerList(x.evicted_by), 'signers'],
      ['Jobs re-queued', x => {
        if (x.state !== 'evicted') return '–';
        const r = rescueOf(x);
        if (!r) return h('span', {class: 'muted', title: 'read from node.evicted events; none seen since this page opened'}, 'not seen');
        return [h('div', {}, `${r.count}${r.discardedCount ? ` (+${r.discardedCount} out of attempts)` : ''}`),
          h('div', {class: 'jobs'}, jobLinks(r.ids), r.count > r.ids.size ? ' …' : '')];
      }, 'requeued'],
      ['Traffic in / out', x => (x.peer === m.me ? '–' : `${kib(x.bytes_in)} / ${kib(x.bytes_out)}`), 'num'],
    ], m.members, 'No members.', x => ({dataset: {peer: x.peer, state: x.state}})));
  };
  const load = async () => {
    try {
      last = await api('/mesh');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        last = null;
        put(head); put(pic, h('p', {class: 'muted'}, e.message)); put(members);
        return;
      }
      throw e;
    }
    err.textContent = '';
    draw(last);
  };
  const safe = () => load().catch(e => { err.textContent = e.message; });
  const refresh = debounce(safe, 300);
  const unsubscribe = onEvents(ev => {
    if (!ev.kind.startsWith('node.')) return;
    noteRescue(ev);
    noteSuspicion(ev);
    recent.push(ev);
    if (recent.length > 50) recent.shift();
    drawEvents();
    // What the event says shows at once; this node's view follows.
    if (last) draw(last);
    refresh();
  });
  const stop = poll(safe, 2000);
  return () => { unsubscribe(); stop(); };
}
