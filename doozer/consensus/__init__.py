"""Consensus: leaderless Paxos with rotating owners, made fast the Mencius way.

The core is sans-I/O and never imports ``twisted.internet``:

- :mod:`.messages`: every message and the wire format
- :mod:`.value`: an instance's value, a batch of opaque items
- :mod:`.instance`: one Paxos instance's acceptor, learner and coordinator state
- :mod:`.sequencer`: the window, owners, proposing, skipping, learning, hand-out
- :mod:`.acceptor`: rules 1-3 (and the owner's reactions, 5-6)
- :mod:`.revoker`: rule 7, revoking silent owners ahead, retransmissions
- :mod:`.catchup`: heartbeats, WANT/LEARN, TOO_OLD, snapshot installs, FORWARD
- :mod:`.diagnostics`: a sequencer's state as data, for operators and tests

Only :mod:`.transport` touches a socket, and :mod:`.seal` seals its
datagrams with the cluster key. See ``docs/consensus.md`` and
``CONSENSUS.md``.
"""

from doozer.consensus.instance import NOOP
from doozer.consensus.sequencer import Sequencer

__all__ = ["NOOP", "Sequencer"]
