// The dashboard's only way to the server: the public JSON API under /api/v1, with the
// session cookie the browser attaches (same origin). Changes send JSON, which a form on
// another site cannot; the server also checks Sec-Fetch-Site/Origin for them.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, {method = 'GET', body} = {}) {
  const init = {method, credentials: 'same-origin', headers: {accept: 'application/json'}};
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`/api/v1${path}`, init);
  if (r.status === 401) {
    location.assign('/login');
    throw new ApiError(401, null);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const t = q.toString();
  return t ? `?${t}` : '';
}

let me = null;
/** Who is logged in, and what the token may do (`/api/v1/me`), asked once. */
export async function whoami() {
  if (!me) me = await api('/me');
  return me;
}
