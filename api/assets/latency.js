// Queue wait and run time quantiles from this node's Prometheus histograms
// (`/metrics`, read with the session like any API route): each poll takes the
// difference of the cumulative buckets since the last one, so a point is the p50 or
// p99 of the jobs this node claimed or finished in that interval.

const FAMILIES = {wait: 'jobmesh_job_queue_wait_seconds_bucket', run: 'jobmesh_job_duration_seconds_bucket'};
const LINE = /^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+|\+Inf|NaN)/;

/** Cumulative counts per upper bound of a family, summed over queues and kinds. */
export function buckets(text, family) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m || m[1] !== family) continue;
    const le = /(?:^|,)le="([^"]+)"/.exec(m[2]);
    if (!le) continue;
    const bound = le[1] === '+Inf' ? Infinity : Number(le[1]);
    out.set(bound, (out.get(bound) || 0) + Number(m[3]));
  }
  return [...out.entries()].sort((a, b) => a[0] - b[0]);
}

/** The `q` quantile of the jobs between two cumulative snapshots, in seconds. */
export function quantile(before, after, q) {
  const prev = new Map(before);
  const diff = after.map(([b, c]) => [b, c - (prev.get(b) || 0)]);
  const total = diff.length ? diff[diff.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [bound, c] of diff) {
    if (c >= rank) {
      if (!Number.isFinite(bound)) return lower;
      const inBucket = c - below;
      return inBucket > 0 ? lower + (bound - lower) * ((rank - below) / inBucket) : bound;
    }
    lower = Number.isFinite(bound) ? bound : lower;
    below = c;
  }
  return lower;
}

let last = null;
/** Series kept across visits: [{t, wait50, wait99, run50, run99}]. */
export const history = [];

/** Reads `/metrics` once and appends a point (none for an interval with no job). */
export async function sample() {
  const r = await fetch('/metrics', {credentials: 'same-origin'});
  if (!r.ok) return false;
  const text = await r.text();
  const now = {t: Date.now(), wait: buckets(text, FAMILIES.wait), run: buckets(text, FAMILIES.run)};
  if (last) {
    const p = {
      t: now.t,
      wait50: quantile(last.wait, now.wait, 0.5), wait99: quantile(last.wait, now.wait, 0.99),
      run50: quantile(last.run, now.run, 0.5), run99: quantile(last.run, now.run, 0.99),
    };
    if (p.wait50 !== null || p.run50 !== null) history.push(p);
    while (history.length && history[0].t < now.t - 3600 * 1000) history.shift();
  }
  last = now;
  return true;
}
