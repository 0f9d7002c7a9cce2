"""The CAL's rules in one place: slot names and the order of members.

The CAL (``/ctl/cal/<n>``) decides who votes: ``M(s)`` is its non-empty
slots **by slot number**, so every node must read the same order from the
same store. A slot name is canonical decimal, 0–999, no sign, no leading
zero (SPEC §1): with ``1`` and ``01`` both allowed, two slots would have one
number and their order would fall to whatever the process's hash seed made
of a set, differing between nodes (two owners for one instance).
"""

from __future__ import annotations

from typing import Iterable, Optional

#: Where the CAL slots live (SPEC §5).
CAL_DIR = "/ctl/cal"
CAL_PREFIX = CAL_DIR + "/"
#: The highest slot number (SPEC §1).
MAX_SLOT = 999


def slot_number(name: str) -> Optional[int]:
    """The number of CAL slot ``name``, or None when it is not a canonical
    slot name (``"7"`` is slot 7; ``"07"``, ``"+7"``, ``"1000"`` are none)."""
    if not name or len(name) > 3 or not name.isascii() or not name.isdigit():
        return None
    if len(name) > 1 and name[0] == "0":
        return None
    return int(name)


def slot_of_path(path: str) -> Optional[int]:
    """The slot number when ``path`` is a canonical slot file ``/ctl/cal/<n>``."""
    if not path.startswith(CAL_PREFIX):
        return None
    return slot_number(path[len(CAL_PREFIX):])


def ordered_members(slots: Iterable[tuple[str, bytes]]) -> list[tuple[int, str]]:
    """``(slot number, member id)`` of the canonical, non-empty slots among
    ``(name, value)`` pairs, by slot number. Anything else (a non-canonical
    name left in an old store, an empty slot) never affects ``M(s)``."""
    out = []
    for name, value in slots:
        number = slot_number(name)
        if number is not None and value:
            out.append((number, value.decode("utf-8", "replace")))
    out.sort()
    return out


def client_may_write(path: str) -> Optional[str]:
    """Why a client may not write ``path`` under ``/ctl`` (None: it may).

    Clients may create, empty or delete CAL slots ``/ctl/cal/<n>`` with a
    canonical ``n``; everything else under ``/ctl`` is the nodes' own."""
    if path != "/ctl" and not path.startswith("/ctl/"):
        return None
    if slot_of_path(path) is not None:
        return None
    if path.startswith(CAL_PREFIX) and "/" not in path[len(CAL_PREFIX):]:
        return (
            f"{path} is not a CAL slot: slots are /ctl/cal/N with N written in "
            f"decimal from 0 to {MAX_SLOT}, without sign or leading zero"
        )
    return (
        f"{path} is cluster bookkeeping written by the nodes; clients may "
        "only create, empty or delete CAL slots /ctl/cal/N"
    )
