// Keeping pages current without reloads, and without load when nobody looks:
// polling stops while the tab is hidden, and the event stream is closed then too.

const KINDS = ['job.enqueued', 'job.claimed', 'job.succeeded', 'job.failed', 'job.retry_scheduled',
  'job.discarded', 'job.cancelled', 'job.redriven', 'job.rescued', 'worker.started',
  'worker.crashed', 'worker.restarted', 'worker.stopped', 'node.joined', 'node.suspected',
  'node.evicted', 'node.left', 'queue.paused', 'queue.resumed', 'queue.breach_predicted',
  'node.gate_closed', 'node.gate_opened'];

/** Runs `fn` now and every `ms` while the tab is visible; returns a stop function. */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped || document.visibilityState !== 'visible') return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped && document.visibilityState === 'visible') timer = setTimeout(run, ms);
  };
  const onVis = () => {
    if (document.visibilityState === 'visible' && timer === null) run();
    if (document.visibilityState !== 'visible' && timer !== null) { clearTimeout(timer); timer = null; }
  };
  document.addEventListener('visibilitychange', onVis);
  run();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVis);
  };
}

// One EventSource for the tab, shared by whoever listens.
const listeners = new Set();
let source = null;
let lastSeq = null;
let statusCb = () => {};

function open() {
  if (source || !listeners.size || document.visibilityState !== 'visible') return;
  // Resume where we left off (after a hidden spell), else only new events.
  source = new EventSource(lastSeq === null ? '/api/v1/events' : `/api/v1/events?after=${lastSeq}`);
  source.addEventListener('open', () => statusCb('live'));
  source.addEventListener('error', () => statusCb('reconnecting'));
  const deliver = msg => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    if (typeof ev.seq === 'number') lastSeq = Math.max(lastSeq ?? 0, ev.seq);
    for (const l of listeners) { try { l(ev); } catch (e) { console.warn(e); } }
  };
  for (const k of KINDS) source.addEventListener(k, deliver);
  source.addEventListener('message', deliver);
}

function close() {
  if (source) { source.close(); source = null; statusCb('paused'); }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') open(); else close();
});

/** Calls `fn(event)` for each lifecycle event; returns an unsubscribe function. */
export function onEvents(fn) {
  listeners.add(fn);
  open();
  return () => {
    listeners.delete(fn);
    if (!listeners.size) close();
  };
}

/** Called with 'live', 'reconnecting' or 'paused' as the stream changes. */
export function onStreamStatus(fn) { statusCb = fn; }

/** `fn` at most once per `ms`, trailing. */
export function debounce(fn, ms) {
  let t = null;
  return (...a) => {
    if (t !== null) return;
    t = setTimeout(() => { t = null; fn(...a); }, ms);
  };
}
