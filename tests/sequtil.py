"""A consensus sequencer fed by hand, for the tests of doozer/consensus/:
genesis ``a, b, c`` (instance s is owned by ``M[s % 3]``), a seeded rng, and
the messages of one kind in its outbox."""

from __future__ import annotations

import random

from doozer.consensus.sequencer import Sequencer

ABC = ["a", "b", "c"]


def seq(node: str = "a", genesis: list = ABC, **kw) -> Sequencer:
    return Sequencer(node, genesis=genesis, rng=random.Random(0), **kw)


def sent(s: Sequencer, kind: type) -> list:
    return [(d, m) for d, m in s.take_outbox() if type(m) is kind]
