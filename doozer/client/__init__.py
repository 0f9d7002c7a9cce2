"""The client side: a treq client of the HTTP API and the ``doozer`` command.

::

    from doozer.client import connect

    client = connect("doozer:?ca=127.0.0.1:8046&ca=127.0.0.1:8047")
    rev = await client.set("/message", b"hello", rev=0)

- :mod:`doozer.client.client`: :func:`connect` and :class:`Client`, every verb with failover
  (its lease calls, transactions, LEAVE and BACKUP are mixins: :mod:`doozer.client.calls`)
- :mod:`doozer.client.watch`: resumable watches
- :mod:`doozer.client.failover`: which address to try next
- :mod:`doozer.client.uri`: doozer URIs
- :mod:`doozer.client.errors`: one exception class per SPEC error code
- :mod:`doozer.client.types`: files, directories, events as the client returns them
- :mod:`doozer.client.cli`: the ``doozer`` command (its commands: :mod:`doozer.client.commands`)
"""

from doozer.client.client import Client, connect
from doozer.client.errors import (
    ERRORS,
    BadArg,
    BadGlob,
    BadPath,
    Busy,
    ClientError,
    Forbidden,
    IsDir,
    MethodNotAllowed,
    Misdirected,
    MissingArg,
    NoEnt,
    NoSpace,
    NotDir,
    NotFound,
    NotLive,
    NoQuorum,
    NotReady,
    Other,
    ReadOnly,
    RevMismatch,
    Timeout,
    TooLarge,
    TooLate,
    Unauthorized,
    Unavailable,
    Unreachable,
    error_from_response,
)
from doozer.client.types import Dir, Event, File, SelfInfo, Stat, Walk, decode_value
from doozer.client.uri import DEFAULT_URI, BadURI, Target, parse_uri
from doozer.client.watch import Watch
from doozer.errors import DoozerError

__all__ = [
    "connect", "Client", "Watch", "DEFAULT_URI", "BadURI", "Target", "parse_uri",
    "File", "Dir", "Stat", "Walk", "Event", "SelfInfo", "decode_value",
    "DoozerError", "ClientError", "ERRORS", "error_from_response",
    "BadPath", "BadGlob", "BadArg", "MissingArg", "Unauthorized", "Forbidden",
    "NoEnt", "RevMismatch", "IsDir", "NotDir", "TooLate", "TooLarge", "ReadOnly",
    "Unavailable", "Unreachable", "Timeout", "NotFound", "MethodNotAllowed", "Busy",
    "NoSpace", "Misdirected", "NotLive", "NotReady", "NoQuorum", "Other",
]
