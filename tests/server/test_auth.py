"""The peer-only snapshot endpoint and its tokens (doozer/node/snapshot.py)."""

from __future__ import annotations

import pytest
from apiutil import Harness
from treq.testing import StubTreq

from doozer.server.http.api import API
from doozer.server.auth import TokenCheck, body_mac_ok, make_token, peer_headers
from doozer.node.snapshot import Snapshot
from doozer.testing import single_node

KEY = b"k" * 32


def test_snapshot_endpoint_is_served() -> None:
    """Regression: the API gate must keep serving /_peer/snapshot (a new
    node attaches by fetching it; a 404 there means no cluster can form)."""
    h = Harness()
    h.put("/a", b"1")
    reply = h.get("/_peer/snapshot")
    assert reply.code == 200, reply.body
    snap = Snapshot.decode(reply.body)
    assert snap.cluster == h.node.cluster and snap.seqn == h.node.applied_seqn


def test_snapshot_endpoint_wants_the_rw_secret_not_the_ro_one() -> None:
    h = Harness(rw=b"rw", ro=b"ro")
    assert h.get("/_peer/snapshot").code == 401
    assert h.get("/_peer/snapshot", authorization="Bearer ro").code == 401
    assert h.get("/_peer/snapshot", authorization="Bearer rw").code == 200


def test_snapshot_endpoint_is_not_on_the_readonly_webview_api() -> None:
    assert Harness(readonly=True).get("/_peer/snapshot").code == 404


def test_consensus_state_endpoint_shows_the_log_and_wants_peer_credentials() -> None:
    """/_peer/consensus tells an operator (and the fault suite, when a log
    stalls) where this node's log is and what its first open instances wait
    for; like snapshots it is for peers only and absent from the WebView."""
    h = Harness(rw=b"rw", ro=b"ro")
    assert h.call("PUT", "/v1/store/a", b"1", authorization="Bearer rw").code == 200
    assert h.get("/_peer/consensus", authorization="Bearer ro").code == 401
    reply = h.get("/_peer/consensus", authorization="Bearer rw")
    assert reply.code == 200, reply.body
    state = reply.json
    assert state["applied_seqn"] == h.node.applied_seqn == state["decided"]
    assert state["next_out"] == state["decided"] + 1
    assert state["member"] is True and state["open"][0]["seqn"] == state["next_out"]
    assert Harness(readonly=True).get("/_peer/consensus").code == 404
    assert "transport" not in state  # a harness node has no UDP transport


def test_consensus_state_endpoint_includes_the_transport_when_there_is_one() -> None:
    h = Harness()
    h.node.transport_state = lambda: {"stats": {"replayed": 3}}
    reply = h.get("/_peer/consensus")
    assert reply.code == 200 and reply.json["transport"] == {"stats": {"replayed": 3}}


def test_tokens_are_bound_to_the_request_the_key_and_a_short_window() -> None:
    """A peer token is made with the cluster key for one method and path
    and a few seconds; any of the cluster's keys may have made it."""
    now = [1000.0]
    check = TokenCheck([b"new" * 8, KEY], now=lambda: now[0])
    token = make_token(KEY, b"GET", b"/_peer/snapshot", now=1000.0)
    assert check.take(token, b"GET", b"/_peer/consensus") is None  # another path
    assert check.take(make_token(KEY, b"GET", b"/_peer/snapshot", now=1000.0), b"POST", b"/_peer/snapshot") is None
    assert check.take(make_token(b"other" * 8, b"GET", b"/_peer/snapshot", now=1000.0), b"GET", b"/_peer/snapshot") is None
    now[0] = 1031.0
    assert check.take(make_token(KEY, b"GET", b"/_peer/snapshot", now=1000.0), b"GET", b"/_peer/snapshot") is None
    now[0] = 1005.0
    assert check.take(token, b"GET", b"/_peer/snapshot") == token.split(".")[1]
    assert check.take("junk", b"GET", b"/_peer/snapshot") is None


def test_a_peer_token_cannot_be_replayed() -> None:
    """SPEC §12 [the first builds' token was a bearer token good for ±300 s]:
    a captured token is refused the second time, within its window too."""
    check = TokenCheck([KEY], now=lambda: 1000.0)
    token = make_token(KEY, b"GET", b"/_peer/snapshot", now=1000.0)
    assert check.take(token, b"GET", b"/_peer/snapshot") is not None
    assert check.take(token, b"GET", b"/_peer/snapshot") is None


def keyed_stub() -> tuple:
    node = single_node()
    return node, StubTreq(API(node, cluster_key=KEY).resource())


def fetch(stub: StubTreq, headers: dict) -> tuple:
    out: list = []
    d = stub.get("http://doozer/_peer/snapshot", headers=headers)
    d.addCallback(lambda r: r.content().addCallback(lambda b: out.append((r.code, r.headers, b))))
    stub.flush()
    return out[0]


def test_with_a_key_a_snapshot_needs_a_token_and_is_tagged_for_that_request() -> None:
    """With a cluster key the snapshot endpoint answers a peer token once,
    and its tag binds the token's nonce and the whole body (cluster id
    included): a tampered or replayed answer does not check."""
    node, stub = keyed_stub()
    assert fetch(stub, {})[0] == 401
    headers, nonce = peer_headers(KEY, b"GET", b"/_peer/snapshot", node.clock.seconds())
    code, reply_headers, body = fetch(stub, headers)
    assert code == 200
    tag = reply_headers.getRawHeaders(b"x-doozer-snapshot-mac")[0].decode()
    assert body_mac_ok([KEY], nonce, body, tag)
    assert not body_mac_ok([KEY], nonce, body + b"x", tag)
    assert not body_mac_ok([KEY], "another-nonce-0000", body, tag)
    assert Snapshot.decode(body).cluster_id == node.cluster_id
    assert fetch(stub, headers)[0] == 401  # the same token again


def test_a_node_never_sends_a_client_secret_to_a_peer() -> None:
    """SPEC §12 [a new node without a key sent its read-write secret, in
    clear, to a forged peer]: the only credential a node sends a peer is a
    token made with the cluster key; without one it sends none."""
    assert peer_headers(None, b"GET", b"/_peer/snapshot", 1000.0) == ({}, None)
    headers, nonce = peer_headers(KEY, b"GET", b"/_peer/snapshot", 1000.0)
    assert list(headers) == [b"X-Doozer-Peer"] and nonce
    assert b"authorization" not in {k.lower() for k in headers}


@pytest.mark.parametrize("insecure", [False, True])
def test_without_a_key_snapshots_are_for_operators_unless_peers_are_insecure(insecure: bool) -> None:
    """Without a cluster key no peer can prove it is one: the snapshot (the
    whole store) is served only with the read-write secret, or to anyone
    when the node runs with --insecure-peers."""
    from doozer.server.auth import Secrets

    node = single_node()
    stub = StubTreq(API(node, secrets=Secrets(b"rw", None), insecure_peers=insecure).resource())
    assert fetch(stub, {})[0] == (200 if insecure else 401)
    assert fetch(stub, {b"Authorization": [b"Bearer rw"]})[0] == 200


def test_peer_tls_policy_makes_client_connections() -> None:
    """Regression: on Twisted 26 the private ClientTLSOptions changed its
    arguments and every snapshot fetch over HTTPS raised AttributeError."""
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from twisted.internet.task import Clock

    from doozer.server.http.peerhttp import https_agent, peer_tls_policy

    creator = peer_tls_policy().creatorForNetloc(b"127.0.0.1", 8046)
    assert IOpenSSLClientConnectionCreator.providedBy(creator)
    https_agent(Clock())


def test_snapshot_sources_are_members_heard_lately_at_any_known_address() -> None:
    """A lagging node copies from another CAL member: one heard from lately
    if any (a stopped one would hold the fetch for its whole timeout), at
    the address its transport knows even when the member's /ctl/node record
    is gone (it was deleted while that member was away)."""
    import random
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from doozer.consensus.sequencer import Sequencer
    from doozer.node.snapshot import snapshot_sources

    clock = Clock()
    clock.advance(100)
    seq = Sequencer("A", genesis=[], rng=random.Random(0), ping_interval=1.0)
    seq.last_heard = {"B": 99.5, "C": 50.0}
    store = SimpleNamespace(cal=lambda: ["A", "B", "C", "D"])
    node = SimpleNamespace(id="A", sequencer=seq, store=store, clock=clock)
    book = {"A": ("h", 1), "B": ("h", 2), "C": ("h", 3)}  # D: no address known
    assert snapshot_sources(node, book.get) == [("h", 2)]
    seq.last_heard = {"C": 50.0}
    assert snapshot_sources(node, book.get) == [("h", 2), ("h", 3)]
    assert snapshot_sources(node, {}.get) == []
