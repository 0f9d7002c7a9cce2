"""10,000 leases on a real 3-member cluster (SPEC §9, issue 19): keepalives
are not writes, so renewing every lease round after round leaves the
store's rev exactly where the grants left it, and no lease is lost.

The rounds run back to back through all three members, for longer than a
lease would live unrenewed (ttl × 1.02 + 2 s), so that every lease still
being there at the end shows the renewals, not the ttl, kept it. On the
2-core test machine a round of 10,000 keepalives takes 5-20 s, about a
third of the ttl."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from typing import Any, Callable, Iterable

import pytest

from process.test_cluster_process import Cluster, rev

pytestmark = pytest.mark.slow

LEASES = 10_000
TTL = 60
#: Rounds at least, and for ttl × 1.02 + 2 s at least.
ROUNDS = 3
#: Connections per node the test sends on (each one request at a time).
CONNECTIONS = 6


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def in_parallel(nodes: list[Any], items: Iterable[Any],
                call: Callable[[http.client.HTTPConnection, Any], Any]) -> list[Any]:
    """``call(connection, item)`` for every item, on CONNECTIONS keep-alive
    connections to each node; the results, in no particular order."""
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work(node: Any) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        try:
            while not errors:
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                results.append(call(conn, item))
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in nodes for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, Any]:
    """POST, retrying a refusal that says nothing was done: BUSY, or
    UNAVAILABLE with ``"indeterminate": false`` (docs/api.md: refused after
    its deadline, safe to retry)."""
    while True:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        if resp.status == 503 and (doc.get("error") == "BUSY" or doc.get("error") == "UNAVAILABLE"
                                   and doc.get("indeterminate") is False):
            time.sleep(0.05)
            continue
        return resp.status, doc


def grant(conn: http.client.HTTPConnection, _: Any) -> str:
    status, doc = post(conn, "/v1/lease", json.dumps({"ttl": TTL}).encode())
    assert status == 200, doc
    return str(doc["id"])


def renew(conn: http.client.HTTPConnection, lease: str) -> None:
    status, doc = post(conn, f"/v1/lease/{lease}/keepalive", b"")
    assert status == 200 and doc == {"id": lease, "ttl": TTL}, doc


def test_renewing_10000_leases_takes_no_rev(cluster: Any) -> None:
    nodes = cluster.start(3)
    started = time.monotonic()
    leases = in_parallel(nodes, range(LEASES), grant)
    granted = time.monotonic()
    assert len(set(leases)) == LEASES
    # Each member then records the rev it applied (--pulse, 1 s: three
    # writes of /ctl/node/<id>/applied); a pulse writes only when the rev
    # moved by more than those, so after them the store stays put.
    at = settled_rev(nodes)
    rounds: list[float] = []
    while len(rounds) < ROUNDS or time.monotonic() - granted < TTL * 1.02 + 2:
        begun = time.monotonic()
        in_parallel(nodes, leases, renew)
        rounds.append(time.monotonic() - begun)
    for n in nodes:
        assert rev(n) == at, changes(n, at)
        status, doc = n.request("GET", "/v1/leases", timeout=30)
        assert status == 200
        assert sorted(x["id"] for x in doc["leases"]) == sorted(leases)
    print(f"{LEASES} grants in {granted - started:.1f} s; renewal rounds of "
          + ", ".join(f"{r:.1f}" for r in rounds) + " s; rev stayed at", at)


def settled_rev(nodes: list[Any], quiet: float = 3.0) -> int:
    """The rev once every member has had it for ``quiet`` seconds."""
    deadline = time.monotonic() + 60
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        revs = {rev(n) for n in nodes}
        if len(revs) > 1 or seen not in revs:
            seen, since = max(revs), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the rev did not settle: {revs}")


def changes(node: Any, at: int) -> Any:
    """What changed after rev ``at`` (for a failure's message)."""
    return node.request("GET", f"/v1/watch?glob=/**&rev={at + 1}&limit=20&timeout=1", timeout=5)[1]
