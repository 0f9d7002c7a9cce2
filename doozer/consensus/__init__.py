"""Consensus: leaderless Paxos with rotating owners, made fast the Mencius way.

The core (:mod:`.sequencer`, :mod:`.instance`, :mod:`.phases`,
:mod:`.catchup`, :mod:`.messages`) is sans-I/O and never imports
``twisted.internet``; only :mod:`.transport` touches a socket. See
``docs/consensus.md`` and ``CONSENSUS.md``.
"""

from doozer.consensus.instance import NOOP
from doozer.consensus.sequencer import Sequencer

__all__ = ["NOOP", "Sequencer"]
