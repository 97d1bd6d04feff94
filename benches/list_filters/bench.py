"""p50/p95/p99 of GET /api/v1/jobs pages (100 jobs) at random keyset positions over 1M jobs
(filled by fill.sql). Usage: bench.py TOKENFILE [--id-cursors]

--id-cursors: give every case a cursor by id (`j1`), as builds before the listing by
finish time took; without it a finished range gets a cursor by finish time (`f1`) at a
random job of the window, as that listing's `next_cursor` is."""
import base64, http.client, json, random, sys, time, urllib.parse

args = [a for a in sys.argv[1:] if not a.startswith("--")]
id_cursors = "--id-cursors" in sys.argv
token = open(args[0] if args else "token").read().strip()  # a read token
# against `jobmesh --config perf.toml api --listen 127.0.0.1:7799` (JOBMESH__API__RATE_PER_SECOND=100000)
conn = http.client.HTTPConnection("127.0.0.1", 7799)
random.seed(7)
T0 = 1700000000000  # fill.sql: job i created at T0 + 10 i ms, finished 500 ms later

def b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

def id_cursor(order, _finished):
    return b64(f"j1:{order}:{random.randint(1, 1_000_000)}")

def window_cursor(lo, hi):
    """A cursor by finish time at a random job i in [lo, hi) (finished at T0 + 10 i + 500)."""
    def make(order, finished):
        if id_cursors or not finished:
            return id_cursor(order, finished)
        i = random.randint(lo, hi - 1)
        return b64(f"f1:{order}:{T0 + 10 * i + 500}:{i}")
    return make

def get(query):
    t = time.perf_counter()
    conn.request("GET", "/api/v1/jobs?" + query, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    assert r.status == 200, (r.status, body[:300])
    return ms, json.loads(body)

def payload(expr):
    return "payload=" + urllib.parse.quote(expr)

hour = "finished_from=1700004000000&finished_to=1700007600000"  # jobs 400,000..760,000
minute = "finished_from=1700004000000&finished_to=1700004060000"  # jobs 400,000..406,000
cases = [
    ("no filter", "", id_cursor),
    ("state=retryable", "state=retryable", id_cursor),
    ("queue=q3&state=available", "queue=q3&state=available", id_cursor),
    ("kind=k7", "kind=k7", id_cursor),
    ("state=discarded,cancelled&queue=q1", "state=discarded,cancelled&queue=q1", id_cursor),
    ("priority_min=4&queue=q2", "priority_min=4&queue=q2", id_cursor),
    ("payload $.half == 1 (1 in 2)", payload("$.half == 1"), id_cursor),
    ("payload $.pct == 7 (1 in 100)", payload("$.pct == 7"), id_cursor),
    ('payload $.customer.id == "42" (1 in 1000)', payload('$.customer.id == "42"'), id_cursor),
    ('payload + queue=q2 (1 in 1000)', payload('$.customer.id == "42"') + "&queue=q2", id_cursor),
    ("payload $.rare == 7 (1 in 10,000)", payload("$.rare == 7"), id_cursor),
    ('payload $.customer.id == "none" (none)', payload('$.customer.id == "none"'), id_cursor),
    ("finished range (1 h)", hour, window_cursor(400_000, 760_000)),
    ("finished range (1 min)", minute, window_cursor(400_000, 406_000)),
    ("finished range (1 h) + state=discarded", hour + "&state=discarded", window_cursor(400_000, 760_000)),
    ("finished range (1 h) + payload 1 in 1000", hour + "&" + payload('$.customer.id == "42"'),
     window_cursor(400_000, 760_000)),
]
rows = []
for name, q, cursor in cases:
    lat, n = [], 0
    finished = q.startswith("finished")
    for i in range(200):
        order = "a" if i % 2 == 0 else "d"
        ms, body = get("limit=100&" + (q + "&" if q else "") + "cursor=" + cursor(order, finished))
        lat.append(ms)
        n += len(body["jobs"])
    lat.sort()
    p = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    rows.append((name, p(0.5), p(0.95), p(0.99), n / 200))
    print(f"{name:55} {p(0.5):7.1f} {p(0.95):7.1f} {p(0.99):7.1f} {n / 200:9.1f}", file=sys.stderr)
print(f"| filter (limit=100, 200 random keyset pages, asc/desc) | p50 | p95 | p99 | jobs/page |")
print("|---|---|---|---|---|")
for name, a, b, c, n in rows:
    print(f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} | {n:.1f} |")
