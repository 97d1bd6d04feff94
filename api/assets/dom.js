// Building the page. Every value from the API (job payloads, errors, kinds, queue and
// node names) enters the document as a text node or an attribute value set through
// the DOM: never as markup. No function here parses HTML.

const SVG = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k.startsWith('on')) {
      throw new Error('event handlers go in `on`, never in attributes');
    } else if (k === 'href' && !(String(v).startsWith('#/') || String(v).startsWith('/'))) {
      throw new Error('links stay inside the dashboard');
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h('td', {class: 'num'}, text, child, ...)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

/** Replaces `el`'s children. */
export function put(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

/** A table: `cols` are [title, cell(row), class?]. */
export function table(cols, rows, empty = 'Nothing here.', rowAttrs) {
  if (!rows.length) return h('p', {class: 'muted'}, empty);
  return h('div', {class: 'table-wrap'},
    h('table', {},
      h('thead', {}, h('tr', {}, cols.map(([t, , cls]) => h('th', {class: cls}, t)))),
      h('tbody', {}, rows.map(r => h('tr', rowAttrs ? rowAttrs(r) : {},
        cols.map(([, cell, cls]) => h('td', {class: cls}, cell(r))))))));
}

export function badge(state, prefix = 's-') {
  return h('span', {class: `badge ${prefix}${String(state).replace(/[^a-z_-]/gi, '')}`}, state);
}

export function card(label, value, extra) {
  return h('div', {class: 'card'}, h('div', {class: 'n'}, value), h('div', {class: 'l'}, label), extra);
}

export function time(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  return h('time', {datetime: d.toISOString(), title: d.toISOString()}, d.toLocaleString());
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

export function ago(ms) {
  if (ms === null || ms === undefined) return '–';
  return `${duration(Date.now() - ms)} ago`;
}

export function num(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString();
}

/** Pretty JSON as text. */
export function json(v) {
  return h('pre', {class: 'json'}, JSON.stringify(v, null, 2));
}

/** A modal confirmation; resolves true if confirmed. */
export function confirmDialog(message, action) {
  return new Promise(resolve => {
    const dlg = h('dialog', {id: 'confirm'},
      h('p', {}, message),
      h('div', {class: 'row'},
        h('button', {type: 'button', class: 'danger', id: 'confirm-yes', on: {click: () => { dlg.close(); resolve(true); }}}, action),
        h('button', {type: 'button', id: 'confirm-no', on: {click: () => { dlg.close(); resolve(false); }}}, 'Keep them')));
    dlg.addEventListener('close', () => { dlg.remove(); resolve(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** A line chart of series [{name, cls, points: [[t, v]...]}] over the last `spanMs`. */
export function lineChart(series, spanMs, unit = '/s') {
  const W = 600, H = 120, P = 24;
  const now = Date.now();
  const max = Math.max(1e-9, ...series.flatMap(x => x.points.map(p => p[1])));
  const x = t => P + (W - 2 * P) * (1 - (now - t) / spanMs);
  const y = v => H - P / 2 - (H - P) * (v / max);
  return s('svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img'},
    s('line', {class: 'axis', x1: P, y1: H - P / 2, x2: W - P, y2: H - P / 2}),
    s('text', {x: 2, y: 10}, `${max.toFixed(max < 10 ? 2 : 0)}${unit}`),
    series.map(ser => {
      if (!ser.points.length) return null;
      // A single point has no line: a dot, so one busy minute still shows.
      if (ser.points.length === 1) {
        const [t, v] = ser.points[0];
        return s('circle', {class: `line ${ser.cls}`, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5}, s('title', {}, ser.name));
      }
      return s('polyline', {class: `line ${ser.cls}`, points: ser.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')},
        s('title', {}, ser.name));
    }));
}
