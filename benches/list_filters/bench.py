"""p50/p95/p99 of GET /api/v1/jobs pages (100 jobs) at random keyset positions over 1M jobs."""
import base64, http.client, json, random, statistics, sys, time, urllib.parse

token = open(sys.argv[1] if len(sys.argv) > 1 else "token").read().strip()  # a read token
# against `jobmesh --config perf.toml api --listen 127.0.0.1:7799` (JOBMESH__API__RATE_PER_SECOND=100000)
conn = http.client.HTTPConnection("127.0.0.1", 7799)
random.seed(7)

def cursor(order, after):
    return base64.urlsafe_b64encode(f"j1:{order}:{after}".encode()).decode().rstrip("=")

def get(query):
    t = time.perf_counter()
    conn.request("GET", "/api/v1/jobs?" + query, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    assert r.status == 200, (r.status, body[:300])
    return ms, json.loads(body)

m = urllib.parse.quote('$.customer.id == "42"')
cases = {
    "no filter": "",
    "state=retryable": "state=retryable",
    "queue=q3&state=available": "queue=q3&state=available",
    "kind=k7": "kind=k7",
    "state=discarded,cancelled&queue=q1": "state=discarded,cancelled&queue=q1",
    "priority_min=4&queue=q2": "priority_min=4&queue=q2",
    "payload $.customer.id==\"42\"": "payload=" + m,
    "payload + queue=q2": "payload=" + m + "&queue=q2",
    "finished range (1 h)": "finished_from=1700004000000&finished_to=1700007600000",
}
rows = []
for name, q in cases.items():
    lat, n = [], 0
    for i in range(200):
        order = "a" if i % 2 == 0 else "d"
        after = random.randint(1, 1_000_000)
        ms, body = get("limit=100&" + (q + "&" if q else "") + "cursor=" + cursor(order, after))
        lat.append(ms)
        n += len(body["jobs"])
    lat.sort()
    p = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    rows.append((name, p(0.5), p(0.95), p(0.99), n / 200))
print(f"{'filter (limit=100, 200 random keyset pages, asc/desc)':55} {'p50':>7} {'p95':>7} {'p99':>7} {'jobs/page':>9}")
for name, a, b, c, n in rows:
    print(f"{name:55} {a:7.1f} {b:7.1f} {c:7.1f} {n:9.1f}")
