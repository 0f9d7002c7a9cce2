"""The consensus wire format: every message the sequencers exchange.

Messages are small immutable ``NamedTuple``s (cheap to build, no copies on
the hot path). On the wire a message is one msgpack array::

    [cluster_name, cluster_id, sender, counter, code, field, field, ...]

so every datagram names its cluster and its sender; ``counter`` is the
sender's datagram counter, used by the transport to drop replays. Ballots are
``(k, node_id)`` pairs compared lexicographically; msgpack arrays decode to
tuples (``use_list=False``) so ballots come back comparable and hashable.

:func:`unpack` validates every field's type and range before a message is
built, so the sequencer never sees a malformed message: anything else raises
:class:`MalformedMessage`, which the transport counts and drops.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import msgpack

#: A ballot: ``(k, node_id)``. ``(0, owner)`` is the owner's implicit ballot.
Ballot = tuple[int, str]

#: One instance of a :class:`Promise`: ``(seqn, accepted ballot, accepted
#: value)``, the last two both None when nothing was accepted.
PromiseEntry = tuple[int, Optional[Ballot], Optional[bytes]]


#: Encoded overhead of one item in a batch (msgpack bin header), and a bound
#: on everything around a value in a datagram (message fields, envelope, tag);
#: batches are cut so that value + overhead stays under the size limit.
ITEM_OVERHEAD = 5
ENVELOPE_OVERHEAD = 512


class MalformedMessage(ValueError):
    """Bytes that do not decode to a valid message."""


class Accept(NamedTuple):
    """Phase 2a: accept ``value`` for instance ``seqn`` at ``ballot``."""

    seqn: int
    ballot: Ballot
    value: bytes


class Accepted(NamedTuple):
    """Phase 2b, broadcast to the members so everyone learns in one delay."""

    seqn: int
    ballot: Ballot
    digest: bytes


class Skip(NamedTuple):
    """The owner's instances in ``[start, upto)`` are no-ops (Mencius)."""

    owner: str
    start: int
    upto: int


class Prepare(NamedTuple):
    """Phase 1a for one or more instances, ``ballot[0] >= 1``."""

    seqns: tuple[int, ...]
    ballot: Ballot


class Promise(NamedTuple):
    """Phase 1b: ``entries`` are ``(seqn, accepted_ballot|None, value|None)``
    for exactly the instances promised."""

    ballot: Ballot
    entries: tuple[PromiseEntry, ...]


class Nack(NamedTuple):
    """The ballot sent for ``seqn`` is below ``promised``."""

    seqn: int
    promised: Ballot


class Learn(NamedTuple):
    """Instance ``seqn`` is decided with ``value``."""

    seqn: int
    value: bytes


class Want(NamedTuple):
    """Please send the decided values of ``[start, upto)`` (catch-up)."""

    start: int
    upto: int


class Ping(NamedTuple):
    """Heartbeat: the sender's contiguous decided seqn and its frontier, and
    the members it has heard nothing from for ``--timeout`` (its suspects;
    a member's removal needs them confirmed, see docs/consensus.md)."""

    decided: int
    frontier: int
    suspects: tuple[str, ...] = ()


class Forward(NamedTuple):
    """A non-member asks a member to propose these items for it."""

    items: tuple[bytes, ...]


class TooOld(NamedTuple):
    """The sender no longer keeps ``seqn``; its oldest kept is ``oldest``.
    The asker needs a snapshot."""

    seqn: int
    oldest: int


class Hello(NamedTuple):
    """A node looking for its cluster (``--peers``): "who are you, and in
    which cluster?" Sent to addresses, before any cluster id is known."""

    addr: str
    cluster_name: str


class Status(NamedTuple):
    """The answer to :class:`Hello`: the sender's address, its cluster's
    name and id (:data:`NO_CLUSTER` when in none) and whether it is a member."""

    addr: str
    cluster_name: str
    cluster_id: str
    member: bool
    decided: int


class Bundle(NamedTuple):
    """Several consensus messages for one peer in one datagram.

    The node sends everything one reactor turn produced for a peer together
    (e.g. an ``ACCEPTED`` and a ``SKIP``, or many ``ACCEPT``s under load):
    one datagram, one system call and one HMAC instead of several. The
    receiver handles the messages in order, exactly as if they had come in
    separate datagrams back to back. A bundle never holds a bundle or a
    discovery message, and is split again when it would not fit a datagram
    or holds more than :data:`MAX_BUNDLE` messages.
    """

    messages: tuple[Message, ...]


#: The cluster id of a node that is in no cluster yet.
NO_CLUSTER = "-"

#: Messages that travel between nodes of different (or no) clusters.
DISCOVERY = (Hello, Status)

Message = Union[
    Accept, Accepted, Skip, Prepare, Promise, Nack, Learn, Want, Ping, Forward, TooOld,
    Hello, Status, Bundle,
]

# Wire codes. Never renumber: they are the protocol.
CODES: dict[type, int] = {
    Accept: 1,
    Accepted: 2,
    Skip: 3,
    Prepare: 4,
    Promise: 5,
    Nack: 6,
    Learn: 7,
    Want: 8,
    Ping: 9,
    Forward: 10,
    TooOld: 11,
    Hello: 12,
    Status: 13,
    Bundle: 14,
}

_MAX_INT = 2**62
_MAX_LIST = 4096
#: The most messages a receiver takes in one :class:`Bundle`; senders split
#: longer ones, even when their bytes would fit one datagram.
MAX_BUNDLE = _MAX_LIST
#: The most suspects one PING names (a CAL has at most a few members).
MAX_SUSPECTS = 64


def _int(x: Any) -> bool:
    # bool is an int subclass; msgpack's true/false must not pass as seqns.
    return type(x) is int and 0 <= x < _MAX_INT


def _str(x: Any) -> bool:
    return type(x) is str and 0 < len(x) <= 256


def _bool(x: Any) -> bool:
    return type(x) is bool


def _bytes(x: Any) -> bool:
    return type(x) is bytes


def _ballot(x: Any) -> bool:
    return type(x) is tuple and len(x) == 2 and _int(x[0]) and _str(x[1])


def _seqns(x: Any) -> bool:
    return type(x) is tuple and 0 < len(x) <= _MAX_LIST and all(_int(s) for s in x)


def _entry(x: Any) -> bool:
    if type(x) is not tuple or len(x) != 3 or not _int(x[0]):
        return False
    if x[1] is None:
        return x[2] is None
    return _ballot(x[1]) and _bytes(x[2])


def _entries(x: Any) -> bool:
    return type(x) is tuple and len(x) <= _MAX_LIST and all(_entry(e) for e in x)


def _ids(x: Any) -> bool:
    return type(x) is tuple and len(x) <= MAX_SUSPECTS and all(_str(i) for i in x)


def _items(x: Any) -> bool:
    return type(x) is tuple and 0 < len(x) <= _MAX_LIST and all(_bytes(i) for i in x)


_SCHEMA: dict[int, tuple[type[Message], tuple[Callable[[Any], bool], ...]]] = {
    1: (Accept, (_int, _ballot, _bytes)),
    2: (Accepted, (_int, _ballot, _bytes)),
    3: (Skip, (_str, _int, _int)),
    4: (Prepare, (_seqns, _ballot)),
    5: (Promise, (_ballot, _entries)),
    6: (Nack, (_int, _ballot)),
    7: (Learn, (_int, _bytes)),
    8: (Want, (_int, _int)),
    9: (Ping, (_int, _int, _ids)),
    10: (Forward, (_items,)),
    11: (TooOld, (_int, _int)),
    12: (Hello, (_str, _str)),
    13: (Status, (_str, _str, _str, _bool, _int)),
}

_packer = msgpack.Packer(use_bin_type=True)


def pack(cluster_name: str, cluster_id: str, sender: str, counter: int, message: Message) -> bytes:
    """Encode ``message`` with its envelope (cluster, sender, counter)."""
    data: bytes = _packer.pack((cluster_name, cluster_id, sender, counter, *_wire(message)))
    return data


class Envelope(NamedTuple):
    """A decoded datagram body."""

    cluster_name: str
    cluster_id: str
    sender: str
    counter: int
    message: Message


def _load(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, strict_map_key=True
        )
    except Exception as e:  # msgpack raises many unrelated types on garbage
        raise MalformedMessage(f"undecodable: {type(e).__name__}") from None


def _bundle(fields: tuple[Any, ...]) -> "Bundle":
    if len(fields) != 1 or type(fields[0]) is not tuple or not 0 < len(fields[0]) <= MAX_BUNDLE:
        raise MalformedMessage("bad fields for Bundle")
    out = []
    for entry in fields[0]:
        if type(entry) is not tuple or not entry or entry[0] in _NOT_BUNDLED:
            raise MalformedMessage("bad message in Bundle")
        out.append(_build(entry[0], entry[1:]))
    return Bundle(tuple(out))


#: Codes that never travel inside a bundle (discovery, and bundles).
_NOT_BUNDLED = frozenset((CODES[Hello], CODES[Status], CODES[Bundle]))


def _wire(message: Message) -> tuple[Any, ...]:
    """``(code, field, ...)``; a bundle's messages each become such a tuple."""
    if type(message) is Bundle:
        return (CODES[Bundle], tuple((CODES[type(m)], *m) for m in message.messages))
    return (CODES[type(message)], *message)


def _build(code: Any, fields: tuple[Any, ...]) -> Message:
    if code == 14 and type(code) is int:
        return _bundle(fields)
    schema = _SCHEMA.get(code) if type(code) is int else None
    if schema is None:
        raise MalformedMessage("unknown message code")
    cls, checks = schema
    if len(fields) != len(checks) or not all(check(f) for check, f in zip(checks, fields)):
        raise MalformedMessage(f"bad fields for {cls.__name__}")
    return cls(*fields)


def unpack(data: bytes) -> Envelope:
    """Decode and validate bytes made by :func:`pack`.

    :raises MalformedMessage: for anything that is not a valid message.
    """
    obj = _load(data)
    if type(obj) is not tuple or len(obj) < 5:
        raise MalformedMessage("not an envelope")
    name, cid, sender, counter, code = obj[:5]
    if not (_str(name) and _str(cid) and _str(sender) and _int(counter)):
        raise MalformedMessage("bad envelope field")
    return Envelope(name, cid, sender, counter, _build(code, obj[5:]))


def encode(message: Message) -> bytes:
    """A message alone (no envelope), e.g. for size estimates and tests."""
    data: bytes = _packer.pack(_wire(message))
    return data


def decode(data: bytes) -> Message:
    """Inverse of :func:`encode`.

    :raises MalformedMessage: for anything that is not a valid message.
    """
    obj = _load(data)
    if type(obj) is not tuple or not obj:
        raise MalformedMessage("not a message")
    return _build(obj[0], obj[1:])
