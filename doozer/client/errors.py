"""The client's typed exceptions: one class per SPEC §3 error code.

Every class is a :class:`doozer.errors.DoozerError`, so ``except DoozerError``
catches them all and ``err.code`` is the SPEC code; catch a class to handle
one case::

    try:
        await client.set("/lock", b"me", rev=0)
    except RevMismatch as err:
        print("taken at rev", err.rev)

:func:`error_from_response` builds the right one from an HTTP error answer.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from doozer.errors import STATUS, DoozerError


class ClientError(DoozerError):
    """Base of the client's exceptions; ``CODE`` is the SPEC error code."""

    CODE = "OTHER"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(self.CODE, detail, **extra)

    @property
    def index(self) -> Optional[int]:
        """For a transaction: which compare or op failed (counted in the
        list ``extra["in"]`` names, ``"compare"`` or ``"ops"``); else None."""
        index = self.extra.get("index")
        return index if isinstance(index, int) else None


class BadPath(ClientError):
    """The path is not valid (SPEC §1)."""

    CODE = "BAD_PATH"


class BadGlob(ClientError):
    """The glob is not valid (SPEC §2)."""

    CODE = "BAD_GLOB"


class BadArg(ClientError):
    """A query argument was malformed."""

    CODE = "BAD_ARG"


class MissingArg(ClientError):
    """A required argument was absent."""

    CODE = "MISSING_ARG"


class Unauthorized(ClientError):
    """A secret is needed (``sk=`` in the URI) or the one given is wrong."""

    CODE = "UNAUTHORIZED"


class Forbidden(ClientError):
    """The read-only secret was used for a write, or a write under ``/ctl``."""

    CODE = "FORBIDDEN"


class NoEnt(ClientError):
    """The file or directory does not exist."""

    CODE = "NOENT"


class RevMismatch(ClientError):
    """A write's rev precondition failed; :attr:`rev` is the file's current rev."""

    CODE = "REV_MISMATCH"

    @property
    def rev(self) -> int:
        """The file's current rev (0 when it does not exist)."""
        return int(self.extra.get("rev", 0))


class IsDir(ClientError):
    """The path is a directory where a file was expected."""

    CODE = "ISDIR"


class NotDir(ClientError):
    """A prefix of the path is a file, or GETDIR was asked of a file."""

    CODE = "NOTDIR"


class TooLate(ClientError):
    """The rev asked for is older than the node's history; see :attr:`oldest`."""

    CODE = "TOO_LATE"

    @property
    def oldest(self) -> Optional[int]:
        """The oldest rev the node could still answer."""
        oldest = self.extra.get("oldest")
        return None if oldest is None else int(oldest)


class TooLarge(ClientError):
    """The value is larger than the node's ``--max-value``."""

    CODE = "TOO_LARGE"


class ReadOnly(ClientError):
    """The node cannot take writes (not a member); the write was not made."""

    CODE = "READONLY"


class Unavailable(ClientError):
    """The write could not be committed in time.

    It **may still commit later** when :attr:`indeterminate` is true: read the
    key before deciding whether to retry.
    """

    CODE = "UNAVAILABLE"

    @property
    def indeterminate(self) -> bool:
        """True when the write may still take effect."""
        return bool(self.extra.get("indeterminate", False))


class Unreachable(Unavailable):
    """No node answered (connection refused, reset, or timed out).

    :attr:`indeterminate` is true when a write had been sent to a node before
    it failed, so it may have been (or may yet be) committed.
    """


class Timeout(ClientError):
    """A read at a future rev, or a ``wait``, saw nothing in time."""

    CODE = "TIMEOUT"


class NotFound(ClientError):
    """No such endpoint: the address is probably not a doozer node."""

    CODE = "NOT_FOUND"


class MethodNotAllowed(ClientError):
    """Wrong method for the endpoint (e.g. a write to a WebView address)."""

    CODE = "METHOD_NOT_ALLOWED"


class Busy(ClientError):
    """The node holds as many pending writes as it takes (or this client its
    fair share of them); the write was **not** proposed: retry later or at
    another member. Also: the node is sending another backup."""

    CODE = "BUSY"


class NoSpace(ClientError):
    """The write would take the store past its quota; deletes still work."""

    CODE = "NOSPACE"


class Misdirected(ClientError):
    """The node does not answer to the Host the request named (use its
    address, or a name it was given with ``--allowed-hosts``)."""

    CODE = "MISDIRECTED"


class NotLive(ClientError):
    """``/livez``: the node has stopped for good or its disk does not
    answer (``reason`` says which); a supervisor should restart it."""

    CODE = "NOT_LIVE"


class NotReady(ClientError):
    """``/readyz``: the node should not be sent clients now (``reason``:
    in no cluster, catching up, no quorum...)."""

    CODE = "NOT_READY"


class NoQuorum(ClientError):
    """``doozer leave`` refused: without the node the members left (or the
    voters of the instances still open) would have no quorum
    (``members_left``, ``live``, ``quorum``). Nothing was proposed."""

    CODE = "NO_QUORUM"


class Other(ClientError):
    """A server bug (500) or an answer the client does not understand."""

    CODE = "OTHER"


#: SPEC code -> exception class.
ERRORS: dict[str, type[ClientError]] = {
    cls.CODE: cls
    for cls in (
        BadPath,
        BadGlob,
        BadArg,
        MissingArg,
        Unauthorized,
        Forbidden,
        NoEnt,
        RevMismatch,
        IsDir,
        NotDir,
        TooLate,
        TooLarge,
        ReadOnly,
        Unavailable,
        Timeout,
        NotFound,
        MethodNotAllowed,
        Busy,
        NoSpace,
        Misdirected,
        NotLive,
        NotReady,
        NoQuorum,
        Other,
    )
}
assert set(ERRORS) == set(STATUS), "one client exception per SPEC code"

_BY_STATUS = {400: BadArg, 401: Unauthorized, 403: Forbidden, 404: NotFound,
              405: MethodNotAllowed, 409: Other, 410: TooLate, 413: TooLarge,
              421: Misdirected, 503: Unavailable, 504: Timeout, 507: NoSpace}


def error_from_response(status: int, body: bytes, where: str = "") -> ClientError:
    """The exception for an HTTP error answer.

    :param status: the HTTP status code.
    :param body: the response body (SPEC §3's JSON error, or anything else
        from a proxy or a server that is not doozer).
    :param where: the node's base URL, named in the detail when the body is
        not a doozer error.
    """
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        cls = ERRORS.get(obj["error"])
        extra = {k: v for k, v in obj.items() if k not in ("error", "detail")}
        detail = str(obj.get("detail") or "")
        if cls is None:
            return Other(f"{obj['error']}: {detail}", **extra)
        return cls(detail, **extra)
    text = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
    cls = _BY_STATUS.get(status, Other)
    return cls(f"HTTP {status} from {where or 'the node'}: {text or 'no body'}")
