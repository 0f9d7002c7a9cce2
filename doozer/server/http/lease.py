"""The body of ``POST /v1/lease`` (SPEC §9): ``{"ttl": S}``, read and checked
before anything is proposed. Anything else (not UTF-8 JSON, another key, a
ttl that is not an integer) is ``BAD_ARG``; the node checks the ttl's range
(1..3600 seconds). The body is small: past :data:`MAX_BODY` bytes it is
``BAD_ARG`` too, without parsing it."""

from __future__ import annotations

import json

from twisted.web.iweb import IRequest

from doozer.errors import DoozerError

#: Bytes a grant's body may have (``{"ttl": 3600}`` with room for spaces).
MAX_BODY = 1024


def read_ttl(request: IRequest) -> int:
    """The ttl of a ``POST /v1/lease`` request.

    :raises DoozerError: ``BAD_ARG`` saying what is wrong.
    """
    content = request.content
    if getattr(request, "doozer_too_large", False) or content is None:
        raise _bad()
    content.seek(0, 2)
    if content.tell() > MAX_BODY:
        raise _bad()
    content.seek(0)
    try:
        doc = json.loads(content.read().decode("utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise _bad() from None
    if not isinstance(doc, dict) or set(doc) != {"ttl"} or type(doc["ttl"]) is not int:
        raise _bad()
    ttl: int = doc["ttl"]
    return ttl


def _bad() -> DoozerError:
    return DoozerError("BAD_ARG", 'the body is {"ttl": S}, S an integer from 1 to 3600 seconds')
