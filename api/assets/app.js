// The dashboard's shell: the hash router (#/jobs?state=running, #/jobs/42), the
// navigation, and each page's start and stop (a page stops its polling and its event
// subscriptions when the reader leaves it).

import {h, put} from './dom.js';
import {whoami, ApiError} from './api.js';
import * as overview from './overview.js';
import * as queues from './queues.js';
import * as jobs from './jobs.js';
import * as job from './job.js';
import * as dlq from './dlq.js';
import * as mesh from './mesh.js';
import * as nodes from './nodes.js';
import * as events from './events.js';
import * as admin from './admin.js';

const PAGES = {
  '': overview, queues, jobs, dlq, mesh, nodes, events,
  audit: {render: admin.audit}, tokens: {render: admin.tokens},
};

let stopPage = null;
let generation = 0;

function parse() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q] = raw.split('?');
  const parts = path.split('/').filter(Boolean);
  return {parts, params: new URLSearchParams(q || '')};
}

async function route() {
  const mine = ++generation;
  if (stopPage) { try { stopPage(); } catch (e) { console.warn(e); } stopPage = null; }
  const {parts, params} = parse();
  const main = document.getElementById('main');
  let page = PAGES[parts[0] || ''];
  let id = null;
  if (parts[0] === 'jobs' && parts[1]) { page = job; id = parts[1]; }
  for (const a of document.querySelectorAll('nav a')) {
    const target = a.getAttribute('href').replace(/^#\/?/, '');
    if (target === (parts[0] || '')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('nav').classList.remove('open');
  if (!page) { put(main, h('p', {}, 'No such page.')); return; }
  put(main, h('p', {class: 'muted'}, 'Loading…'));
  try {
    const me = await whoami();
    const stop = await page.render(main, {me, params, id});
    if (mine === generation) stopPage = stop || null; else if (stop) stop();
  } catch (e) {
    if (mine !== generation) return;
    const detail = e instanceof ApiError ? `${e.status}: ${e.message}` : String(e);
    put(main, h('p', {class: 'error', role: 'alert'}, detail));
  }
}

async function start() {
  const menu = document.getElementById('menu');
  menu.addEventListener('click', () => {
    const nav = document.getElementById('nav');
    nav.classList.toggle('open');
    menu.setAttribute('aria-expanded', String(nav.classList.contains('open')));
  });
  try {
    const me = await whoami();
    const scopes = me.scopes.join(', ') + (me.queues.length ? ` · queues ${me.queues.join(', ')}` : '');
    put(document.getElementById('who'), h('span', {title: scopes}, `${me.name} (${scopes})`));
    if (!me.may.admin) for (const a of document.querySelectorAll('[data-admin]')) a.remove();
  } catch (e) {
    console.warn(e);
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
