#!/usr/bin/env python3
"""A jobmesh HTTP API client in plain Python (3.11, standard library only).

It walks through what an application in another language does with a node's API:

1. enqueue one job with an ``Idempotency-Key`` and send the same request again, as a
   client retrying after a lost answer would, checking that the first answer (the same
   job id) comes back instead of a second job;
2. poll the job until it is finished;
3. follow the Server-Sent Events stream from ``after=`` and print the job's events,
   then drop the connection and resume it with ``Last-Event-ID``, checking that no event
   is seen twice and none is skipped.

Usage::

    python3 examples/python/jobmesh_client.py --url http://127.0.0.1:7780 --token jmt_...

or with ``JOBMESH_URL`` and ``JOBMESH_TOKEN`` in the environment (preferred for the
token: a command line is visible to other users of the machine). The token needs the
``enqueue`` and ``read`` scopes on all queues (the event stream spans every queue).

Exit status 0 when the walkthrough passed; 1 with a message on stderr otherwise. HTTP
errors are reported with the problem document's ``type`` and ``detail``. The token is
never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# A job is finished in one of these states (the API's `state` field).
FINISHED_STATES = {"succeeded", "discarded", "cancelled"}
# The events that end a job's timeline.
FINISHING_EVENTS = {"job.succeeded", "job.discarded", "job.cancelled"}


class ClientError(Exception):
    """Anything that makes the walkthrough fail, with a message fit for a user."""


class ApiProblem(ClientError):
    """An HTTP error answer, carrying its RFC 9457 problem document when there is one."""

    def __init__(self, method: str, path: str, status: int, body: bytes):
        self.status = status
        self.problem: dict[str, Any] = {}
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                self.problem = parsed
        except ValueError:
            pass
        if self.problem:
            what = (
                f"type={self.problem.get('type')!r} "
                f"detail={self.problem.get('detail', self.problem.get('title'))!r}"
            )
            if "field" in self.problem:
                what += f" field={self.problem['field']!r}"
        else:
            what = body[:200].decode("utf-8", "replace") or "(empty body)"
        super().__init__(f"{method} {path} answered HTTP {status}: {what}")


@dataclass
class Event:
    """One server-sent event: `id` is the event's sequence number."""

    seq: int
    kind: str
    data: dict[str, Any]


class Client:
    """A small client for a jobmesh node's `/api/v1`."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ClientError(f"--url must be an http(s) URL such as http://127.0.0.1:7780, got {url!r}")
        if parsed.username or parsed.password:
            # Credentials in the URL would end up in messages; the token goes in a header.
            raise ClientError("--url must not carry credentials; pass the token with --token or JOBMESH_TOKEN")
        self.base = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise ApiProblem(method, path, e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"{method} {path}: cannot reach {self.base}: {reason}") from None

    def _json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        with self._request(method, path, body, headers) as resp:
            raw = resp.read()
            try:
                return resp.status, dict(resp.headers), json.loads(raw)
            except ValueError:
                raise ClientError(f"{method} {path}: the answer is not JSON: {raw[:200]!r}") from None

    def health(self) -> dict[str, Any]:
        """`GET /healthz` (needs no token, but sending one does no harm)."""
        return self._json("GET", "/healthz")[2]

    def enqueue(self, job: dict[str, Any], idempotency_key: str) -> tuple[int, bool, dict[str, Any]]:
        """`POST /api/v1/jobs`: (HTTP status, whether the answer was replayed, body)."""
        status, headers, body = self._json("POST", "/api/v1/jobs", job, {"Idempotency-Key": idempotency_key})
        replayed = {k.lower(): v for k, v in headers.items()}.get("idempotent-replayed") == "true"
        return status, replayed, body

    def job(self, job_id: int) -> dict[str, Any]:
        """`GET /api/v1/jobs/{id}`."""
        return self._json("GET", f"/api/v1/jobs/{job_id}")[2]

    def events(self, after: int | None = None, last_event_id: int | None = None) -> Iterator[Event]:
        """Follow `GET /api/v1/events` (text/event-stream) until the caller stops.

        The connection closes when the generator is closed. A read that sees nothing for
        `timeout` seconds fails; the server sends keep-alive comments well within that.
        """
        path = "/api/v1/events"
        if after is not None:
            path += f"?after={after}"
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        resp = self._request("GET", path, headers=headers, timeout=max(self.timeout, 30.0))
        with resp:
            fields: dict[str, list[str]] = {}
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    # A blank line dispatches the event gathered so far.
                    if "data" in fields:
                        yield _event(fields)
                    fields = {}
                elif line.startswith(":"):
                    continue  # a comment: keep-alive
                else:
                    name, _, value = line.partition(":")
                    fields.setdefault(name, []).append(value.removeprefix(" "))
            raise ClientError("the event stream ended before the job's events were seen")


def _event(fields: dict[str, list[str]]) -> Event:
    try:
        data = json.loads("\n".join(fields["data"]))
        return Event(seq=int(fields["id"][-1]), kind=fields.get("event", ["message"])[-1], data=data)
    except (KeyError, ValueError) as e:
        raise ClientError(f"a malformed server-sent event: {fields!r} ({e})") from None


def walkthrough(client: Client, kind: str, payload: dict[str, Any], wait: float) -> None:
    """The demonstration; raises ClientError on the first thing that is not as expected."""
    print(f"node at {client.base}: {client.health().get('status')}")

    # 1. Enqueue with an Idempotency-Key, then retry the very same request.
    key = f"example-{uuid.uuid4()}"
    job = {"kind": kind, "payload": payload}
    status, replayed, first = client.enqueue(job, key)
    job_id = first["id"]
    print(f"enqueued job {job_id} ({first.get('outcome')}, HTTP {status}) with Idempotency-Key {key}")
    status2, replayed2, again = client.enqueue(job, key)
    if again.get("id") != job_id:
        raise ClientError(f"the retried request created job {again.get('id')}, not job {job_id} again")
    if not replayed2:
        raise ClientError("the retried request was not marked Idempotent-Replayed: true")
    print(f"retry with the same key: job {again['id']} again (HTTP {status2}, replayed)")

    # 2. Poll the job until it is finished.
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        view = client.job(job_id)
        if view["state"] in FINISHED_STATES:
            break
        if time.monotonic() > deadline:
            raise ClientError(f"job {job_id} is still {view['state']} after {wait:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    print(f"job {job_id} {view['state']} after {view.get('attempt')} attempt(s)")
    if view["state"] != "succeeded":
        raise ClientError(f"job {job_id} finished as {view['state']}, not succeeded")

    # 3. Follow the event stream from the start of the log, print this job's events, and
    #    leave after the first one to resume with Last-Event-ID.
    seen: list[Event] = []
    stream = client.events(after=0)
    last_seq = 0
    try:
        for ev in stream:
            if ev.seq <= last_seq:
                raise ClientError(f"event {ev.seq} came after event {last_seq}")
            last_seq = ev.seq
            if ev.data.get("job") == job_id:
                seen.append(ev)
                print(f"event {ev.seq} {ev.kind} job={job_id} attempt={ev.data.get('attempt')}")
                break
    finally:
        stream.close()
    if not seen:
        raise ClientError(f"no event of job {job_id} in the stream")
    print(f"reconnecting with Last-Event-ID: {last_seq}")
    stream = client.events(last_event_id=last_seq)
    try:
        for ev in stream:
            if ev.seq <= last_seq:
                raise ClientError(f"the resumed stream repeated event {ev.seq} (resumed after {last_seq})")
            last_seq = ev.seq
            if ev.data.get("job") == job_id:
                seen.append(ev)
                print(f"event {ev.seq} {ev.kind} job={job_id} attempt={ev.data.get('attempt')}")
                if ev.kind in FINISHING_EVENTS:
                    break
    finally:
        stream.close()
    kinds = [e.kind for e in seen]
    for want in ("job.enqueued", "job.succeeded"):
        if want not in kinds:
            raise ClientError(f"job {job_id}'s events {kinds} lack {want}")
    print(f"events of job {job_id}: {' -> '.join(kinds)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("JOBMESH_URL"), help="the node's API, e.g. http://127.0.0.1:7780 (or JOBMESH_URL)")
    parser.add_argument("--token", default=os.environ.get("JOBMESH_TOKEN"), help="a token with enqueue and read (or JOBMESH_TOKEN)")
    parser.add_argument("--kind", default="sleep", help="the job kind to enqueue (default: sleep)")
    parser.add_argument("--payload", default='{"ms": 100}', help="the job's payload as JSON (default: {\"ms\": 100})")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the job to finish (default: 60)")
    args = parser.parse_args(argv)
    if not args.url:
        print("error: no API URL: pass --url or set JOBMESH_URL", file=sys.stderr)
        return 1
    if not args.token:
        print("error: no token: pass --token or set JOBMESH_TOKEN (create one with `jobmesh token create --scope enqueue,read --name NAME`)", file=sys.stderr)
        return 1
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        print(f"error: --payload is not JSON: {e}", file=sys.stderr)
        return 1
    try:
        walkthrough(Client(args.url, args.token), args.kind, payload, args.wait)
    except ClientError as e:
        # Messages never include the token: it only ever goes into a request header.
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
