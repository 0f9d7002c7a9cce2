"""Query arguments, store paths from URLs, and request bodies under a cap."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Optional, overload
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest

if TYPE_CHECKING:
    from doozer.node import Node

from doozer.errors import DoozerError, too_large
from doozer.store.path import validate_glob, validate_path

_INT = re.compile(rb"-?[0-9]{1,18}")
_NUMBER = re.compile(rb"[0-9]{1,9}(\.[0-9]{1,9})?")
_TRUE = (b"1", b"true")
_FALSE = (b"0", b"false", b"")


def _one(request: IRequest, name: str) -> Optional[bytes]:
    args = request.args
    if not args:  # the common case: no query string at all
        return None
    values = args.get(name.encode())
    if not values:
        return None
    if len(values) > 1:
        raise DoozerError("BAD_ARG", f"{name} is given {len(values)} times; give it once")
    return values[0]


@overload
def arg_int(request: IRequest, name: str, minimum: int, default: int) -> int: ...


@overload
def arg_int(
    request: IRequest, name: str, minimum: int, default: None = None
) -> Optional[int]: ...


def arg_int(
    request: IRequest, name: str, minimum: int, default: Optional[int] = None
) -> Optional[int]:
    """An integer argument ``>= minimum``, or ``default`` when absent."""
    raw = _one(request, name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or int(raw) < minimum:
        shown = raw[:40].decode("utf-8", "replace")
        raise DoozerError(
            "BAD_ARG", f"{name} must be an integer >= {minimum}, not {shown!r}"
        )
    return int(raw)


def arg_number(request: IRequest, name: str, default: float, maximum: float) -> float:
    """A number of seconds in ``(0, maximum]``, or ``default`` when absent."""
    raw = _one(request, name)
    if raw is None:
        return default
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not 0 < value <= maximum:
        shown = raw[:40].decode("utf-8", "replace")
        raise DoozerError(
            "BAD_ARG", f"{name} must be a number of seconds in (0, {maximum:g}], not {shown!r}"
        )
    return value


def arg_bool(request: IRequest, name: str) -> bool:
    """A flag: ``1``/``true`` or ``0``/``false``; absent is false."""
    raw = _one(request, name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise DoozerError("BAD_ARG", f"{name} must be 1 or 0")


def arg_str(request: IRequest, name: str, required: bool = False) -> str:
    """A text argument; a ``glob`` is also checked for SPEC §2 syntax (its
    error comes before any other argument's)."""
    raw = _one(request, name)
    if raw is None:
        if required:
            raise DoozerError("MISSING_ARG", f"{name} is required")
        return ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DoozerError("BAD_ARG", f"{name} is not valid UTF-8") from None
    if name == "glob":
        validate_glob(text)
    return text


def store_path(request: IRequest, prefix: bytes) -> str:
    """The store path named by the URL after ``prefix`` (``/v1/store/a/b`` is
    ``/a/b``), checked here so that a bad path is answered before the body
    is looked at or a rev waited for."""
    rest = request.path[len(prefix) :]
    if rest in (b"", b"/"):
        return "/"
    try:
        path = unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError:
        raise DoozerError("BAD_PATH", "the path is not valid UTF-8") from None
    return validate_path(path)


# ----------------------------------------------------------------------
# bodies


def read_body(request: IRequest, node: Node) -> bytes:
    """The request body, or the node's ``TOO_LARGE`` when it exceeds
    ``--max-value`` (a body past the site's cap was never buffered)."""
    if getattr(request, "doozer_too_large", False):
        raise too_large(node.max_value)
    content = request.content
    content.seek(0, 2)
    node.check_value_size(content.tell())
    content.seek(0)
    return content.read()
