"""The peer-only snapshot endpoint and its tokens (doozer/peer.py)."""

from __future__ import annotations

from apiutil import Harness

from doozer.peer import Snapshot, make_token, token_ok


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


def test_tokens_expire_and_need_the_key() -> None:
    token = make_token(b"k", now=1000.0)
    assert token_ok(b"k", token, now=1100.0)
    assert not token_ok(b"other", token, now=1100.0)
    assert not token_ok(b"k", token, now=2000.0)
    assert not token_ok(b"k", "junk", now=1000.0)


def test_peer_tls_policy_makes_client_connections() -> None:
    """Regression: on Twisted 26 the private ClientTLSOptions changed its
    arguments and every snapshot fetch over HTTPS raised AttributeError."""
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from twisted.internet.task import Clock

    from doozer.peer import https_agent, peer_tls_policy

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
    from doozer.peer import snapshot_sources

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
