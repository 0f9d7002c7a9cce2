"""GET /v1/backup (SPEC §8) on an in-memory node: the answer, secrets, one
backup at a time, stalled clients, and writes while a backup streams."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from apiutil import Harness, Reply
from doozer.node import build_node
from doozer.server.auth import Secrets
from doozer.server.config import Config
from doozer.server.http.api import API
from doozer.server.http.backup import STALL_TIMEOUT
from doozer.store import backup
from doozer.store.backup import BackupError


class APIHarness(Harness):
    """A :class:`Harness` that keeps its :class:`API` (to reach its backups)."""

    def __init__(self, rw: Optional[bytes] = None, ro: Optional[bytes] = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.api = API(self.node, secrets=Secrets(rw, ro))
        self.stub = StubTreq(self.api.resource())


class SlowClient:
    """A request whose connection is full after every piece until the test
    resumes it (a client reading slowly), and that records the answer."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.pieces: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self.aborted = False
        self._waiting: list[Deferred] = []
        self.channel = SimpleNamespace(transport=SimpleNamespace(abortConnection=self._abort))

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def notifyFinish(self) -> Deferred:
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        assert not self.finished and not self.aborted
        self.pieces.append(data)
        self.producer.pauseProducing()  # the transport's buffer is full

    def finish(self) -> None:
        self.finished = True
        for d in self._waiting:
            d.callback(None)

    def _abort(self) -> None:
        self.aborted = True
        for d in self._waiting:
            d.errback(Failure(ConnectionLost()))

    def take(self, pieces: int = 1) -> None:
        for _ in range(pieces):
            if self.producer is not None:
                self.producer.resumeProducing()

    def take_all(self) -> bytes:
        while self.producer is not None and not self.aborted:
            self.producer.resumeProducing()
        assert self.finished
        return b"".join(self.pieces)


def start_slow(h: APIHarness) -> SlowClient:
    client = SlowClient()
    h.api.backups.start(h.node).render(client)
    return client


def fill(h: Harness, files: int = 20, size: int = 30_000) -> None:
    for i in range(files):
        assert h.put(f"/big/f{i}", bytes([i]) * size).code == 200


# ----------------------------------------------------------------------


def test_the_backup_holds_every_file_at_its_rev_and_the_history_window() -> None:
    h = APIHarness()
    for i in range(5):
        h.put(f"/app/k{i}", f"v{i}".encode())
    h.put("/bin", b"\xff\x00")
    h.call("DELETE", "/v1/store/app/k1")
    reply = h.get("/v1/backup")
    assert reply.code == 200
    assert reply.header("Content-Type") == "application/octet-stream"
    assert reply.header("Content-Disposition") == f'attachment; filename="local-{h.node.store.rev}.doozer-backup"'
    got = backup.decode(reply.body)
    assert int(reply.header("X-Doozer-Rev")) == got.rev == h.node.store.rev
    assert (got.cluster, got.cluster_id, got.node) == ("local", h.node.cluster_id, h.node.id)
    assert got.store.walk("/**") == h.node.store.walk("/**")
    assert got.oldest == h.node.store.oldest
    assert got.store.events("/**", got.oldest, 10**6) == h.node.store.events("/**", got.oldest, 10**6)


@pytest.mark.parametrize("auth, method, status, code", [
    (None, "GET", 401, "UNAUTHORIZED"),
    ("Bearer wrong", "GET", 401, "UNAUTHORIZED"),
    ("Bearer ro-secret", "GET", 403, "FORBIDDEN"),
    ("Bearer ro-secret", "POST", 403, "FORBIDDEN"),  # authentication before the method
    ("Bearer rw-secret", "POST", 405, "METHOD_NOT_ALLOWED"),
    ("Bearer rw-secret", "HEAD", 405, "METHOD_NOT_ALLOWED"),
])
def test_a_backup_needs_the_read_write_secret(auth: Optional[str], method: str, status: int, code: str) -> None:
    h = APIHarness(rw=b"rw-secret", ro=b"ro-secret")
    headers = {"Authorization": auth} if auth else {}
    reply = h.call(method, "/v1/backup", **headers)
    assert reply.code == status
    if method != "HEAD":
        assert reply.json["error"] == code
    assert h.api.backups.sending is None


def test_with_the_read_write_secret_the_backup_is_sent() -> None:
    h = APIHarness(rw=b"rw-secret", ro=b"ro-secret")
    reply = h.get("/v1/backup", Authorization="Bearer rw-secret")
    assert reply.code == 200
    assert backup.decode(reply.body).rev == h.node.store.rev


def test_the_webview_address_serves_no_backup() -> None:
    h = Harness(readonly=True)
    reply = h.get("/v1/backup")
    assert (reply.code, reply.json["error"]) == (404, "NOT_FOUND")


def test_a_node_in_no_cluster_yet_has_nothing_to_back_up() -> None:
    h = APIHarness()
    lonely = build_node(Config(pulse=0), h.clock, "LONELY", rng=random.Random(1))
    stub = StubTreq(API(lonely).resource())
    out: list = []
    stub.get("http://doozer/v1/backup").addCallback(
        lambda r: r.json().addCallback(lambda body: out.append((r.code, body))))
    stub.flush()
    assert out[0][0] == 503 and out[0][1]["error"] == "READONLY"


def test_a_node_that_is_not_a_member_backs_up_too() -> None:
    h = APIHarness()
    h.put("/k", b"v")
    other = build_node(Config(pulse=0), h.clock, "OTHERNODE", rng=random.Random(1))
    other.install(h.node.snapshot())
    assert not other.member
    stub = StubTreq(API(other).resource())
    out: list = []
    stub.get("http://doozer/v1/backup").addCallback(
        lambda r: r.content().addCallback(lambda body: out.append(Reply(r.code, r.headers, body))))
    stub.flush()
    got = backup.decode(out[0].body)
    assert (out[0].code, got.node, got.cluster_id) == (200, "OTHERNODE", h.node.cluster_id)
    assert got.store.walk("/**") == h.node.store.walk("/**")


def test_one_backup_at_a_time_and_the_place_comes_back() -> None:
    h = APIHarness()
    fill(h)
    slow = start_slow(h)
    assert slow.pieces and not slow.finished
    busy = h.get("/v1/backup")
    assert (busy.code, busy.json["error"]) == (503, "BUSY")
    slow.take_all()
    assert h.api.backups.sending is None
    assert h.get("/v1/backup").code == 200


def test_writes_while_a_backup_streams_do_not_appear_in_it() -> None:
    """The backup is the store at the rev of the request: every file in it is
    at that rev or below, and it holds exactly the files there were then."""
    h = APIHarness()
    fill(h)
    at = h.node.store.rev
    slow = start_slow(h)
    assert slow.headers[b"X-Doozer-Rev"] == b"%d" % at
    for i in range(30):
        slow.take()
        assert h.put(f"/big/f{i % 25}", b"later").code == 200
        if i % 7 == 0:
            h.call("DELETE", f"/v1/store/big/f{i % 20}")
    assert h.node.store.rev > at
    got = backup.decode(slow.take_all())
    assert got.rev == at
    assert all(f.rev <= at for f in got.store.walk("/**"))
    assert got.store.walk("/**") == h.node.store.walk("/**", at)


def test_a_client_that_takes_nothing_is_cut_off_and_the_place_comes_back() -> None:
    h = APIHarness()
    fill(h)
    slow = start_slow(h)
    h.clock.advance(STALL_TIMEOUT - 1)
    slow.take()
    h.clock.advance(STALL_TIMEOUT - 1)  # it took a piece: the timer started again
    assert not slow.aborted
    h.clock.advance(2)
    assert slow.aborted and not slow.finished
    assert h.api.backups.sending is None
    with pytest.raises(BackupError):
        backup.decode(b"".join(slow.pieces))  # what it got is no backup
    assert h.get("/v1/backup").code == 200


def test_a_client_that_goes_away_frees_the_place() -> None:
    h = APIHarness()
    fill(h)
    slow = start_slow(h)
    slow._abort()
    assert h.api.backups.sending is None
    assert not [c for c in h.clock.getDelayedCalls() if "_stalled" in repr(c)]  # no timer left
    assert h.get("/v1/backup").code == 200
