"""What one needs to see why a log does not move: a sequencer's and a
transport's state as plain data, for ``/_peer/consensus`` and the
simulators' failure reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from doozer.addr import format_addr

if TYPE_CHECKING:  # typing only: the objects it reads hold no reference to it
    from doozer.consensus.sequencer import Sequencer
    from doozer.consensus.transport import UDPTransport


def debug_state(seq: "Sequencer", instances: int = 8) -> dict[str, Any]:
    """:meth:`stats` plus the owner's cursors and the first undecided
    instances of the window (who owns them, what was promised, accepted
    and voted): what one needs to see why a log does not move."""
    state = seq.stats()
    state.update(
        next_out=seq._next_out,
        log_oldest=seq.decided_log.oldest,
        cursor=seq._cursor,
        skip_upto=seq._skip_upto,
        blocked=seq._blocked,
        early=len(seq.early),
        forwarded=len(seq._forwarded),
        decided_ahead=sorted(seq._decided)[:instances],
        suspects=list(seq.suspects),
        peer_suspects={p: {"suspects": list(s), "at": t} for p, (s, t) in seq.peer_suspects.items()},
    )
    open_: list[dict[str, Any]] = []
    s = seq._next_out
    while len(open_) < instances and s <= seq._known_upto:
        if s not in seq._decided:
            inst = seq._instances.get(s)
            entry: dict[str, Any] = {"seqn": s, "owner": seq._owner(s)}
            if inst is not None:
                entry.update(
                    promised=list(inst.promised),
                    accepted=list(inst.accepted_ballot) if inst.accepted_ballot else None,
                    phase=inst.phase,
                    ballot=list(inst.ballot) if inst.ballot else None,
                    votes={f"{b[0]}:{b[1]}": sorted(v) for (b, _), v in inst.votes.items()},
                    promises=sorted(inst.promises),
                    open_since=inst.open_since,
                    wanted_at=inst.wanted_at,
                )
            open_.append(entry)
        s += 1
    state["open"] = open_
    state["now"] = seq._now
    return state


def transport_state(transport: "UDPTransport") -> dict[str, Any]:
    """What ``/_peer/consensus`` shows of the transport: the drop
    counters, and where each peer is sent to (from its node record, or
    learned from its datagrams). A peer missing from both is never sent
    anything; a drop counter that grows between two views names the
    reason a peer's datagrams are lost.

    ``senders`` tells, per peer, how many of its datagrams were taken
    and how many refused as replays, and the highest counter taken;
    ``counter`` is this node's own last one, and ``sent_to`` how many
    datagrams it wrote to each address. A peer whose ``taken`` here
    stands still while its own view's ``sent_to`` this node grows is
    lost on the way or refused before it is read (or, with ``replayed``
    growing, refused as a replay: compare ``highest`` with that peer's
    ``counter``). With the TEST-ONLY fault hook on, ``faults`` shows the
    rules this node holds and what they dropped.
    """
    state: dict[str, Any] = {
        "stats": dict(transport.stats),
        "addresses": {p: format_addr(a) for p, a in transport.addresses.items()},
        "learned": {p: format_addr(a) for p, a in transport.learned.items()},
        "cluster_id": transport.cluster_id,
        "counter": transport._counter,
        "sent_to": {format_addr(a): n for a, n in transport._sent_to.items()},
        "senders": {
            p: {"taken": w.taken, "replayed": w.replayed, "highest": w.highest}
            for p, w in transport._windows.items()
        },
    }
    if transport.fault_file is not None:
        state["faults"] = transport.fault_file.debug_state()
    return state
