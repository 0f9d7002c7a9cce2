"""Messages for instances just beyond a sequencer's window, held until the
window reaches them (a bounded queue: :data:`EARLY_MAX` messages,
:data:`EARLY_MAX_BYTES` of values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doozer.consensus.messages import Accept, Message

if TYPE_CHECKING:  # the sequencer holds this collaborator; typing only
    from doozer.consensus.sequencer import Sequencer

#: Bounds on the messages held for instances beyond the window.
EARLY_MAX = 256
EARLY_MAX_BYTES = 4 * 1024 * 1024


class EarlyMessages:
    """The held ``(seqn, sender, message)`` of one sequencer."""

    def __init__(self, seq: "Sequencer") -> None:
        self._seq = seq
        self._held: list[tuple[int, str, Message]] = []
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, s: int, sender: str, msg: Message) -> None:
        """Keep an ACCEPT/ACCEPTED/SKIP/PREPARE for ``s`` just beyond our window.

        We are a few instances behind the sender (we do not know M(s) yet).
        Dropping the message would make us lose the instance for good when
        the others decide it without us (nothing resends a decided instance):
        we would then wait for a WANT to learn it, and our own unused
        instances below it would stay open, holding the whole log back until
        they are revoked. Handling it a moment later, once our window reaches
        ``s``, is the same as a delayed datagram, which the protocol allows.
        """
        seq = self._seq
        if s > seq._known_upto + seq.alpha or len(self._held) >= EARLY_MAX:
            return
        size = len(msg.value) if type(msg) is Accept else 0
        if self._bytes + size > EARLY_MAX_BYTES:
            return
        self._held.append((s, sender, msg))
        self._bytes += size
        seq._count("held_early")

    def ready(self) -> bool:
        """Whether a held message's instance is now in the window."""
        seq = self._seq
        known = seq._known_upto
        return any(s <= known for s, _, _ in self._held)

    def replay(self, now: float) -> None:
        """Handle the held messages whose instance is now in the window."""
        seq = self._seq
        known = seq._known_upto
        ready = [e for e in self._held if e[0] <= known]
        self._held = [e for e in self._held if e[0] > known]
        self._bytes = sum(
            len(m.value) for _, _, m in self._held if type(m) is Accept
        )
        handlers = seq._handlers
        for _, sender, msg in ready:
            handlers[type(msg)](sender, msg, now)
        seq._drain_local(now)
