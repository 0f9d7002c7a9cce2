"""The error codes of SPEC §3 as one exception type.

Every layer raises :class:`DoozerError`; the HTTP front end and the doozerd
protocol front end each translate it in one place.
"""

from __future__ import annotations

from typing import Any

#: SPEC §3 error table: code -> HTTP status.
STATUS: dict[str, int] = {
    "BAD_PATH": 400,
    "BAD_GLOB": 400,
    "BAD_ARG": 400,
    "MISSING_ARG": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOENT": 404,
    "REV_MISMATCH": 409,
    "ISDIR": 409,
    "NOTDIR": 409,
    # SPEC §11's leave, refused: the members left would have no quorum
    "NO_QUORUM": 409,
    "TOO_LATE": 410,
    "TOO_LARGE": 413,
    "READONLY": 503,
    "UNAVAILABLE": 503,
    "TIMEOUT": 504,
    "BUSY": 503,
    "NOSPACE": 507,
    "MISDIRECTED": 421,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "OTHER": 500,
    # SPEC §11's probes: /livez and /readyz answer 503 with one of these
    "NOT_LIVE": 503,
    "NOT_READY": 503,
}


class DoozerError(Exception):
    """A failure with a SPEC error code.

    :param code: one of the keys of :data:`STATUS`.
    :param detail: human-readable text saying what went wrong and, where it
        helps, what to do next.
    :param extra: further fields of the error body (``rev`` for
        ``REV_MISMATCH``, ``oldest`` for ``TOO_LATE``, ``indeterminate`` for
        ``UNAVAILABLE``).
    """

    def __init__(self, code: str, detail: str = "", **extra: Any) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail or code.lower().replace("_", " ")
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        """The JSON error body of SPEC §3."""
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        out.update(self.extra)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DoozerError)
            and (self.code, self.detail, self.extra)
            == (other.code, other.detail, other.extra)
        )

    def __hash__(self) -> int:
        return hash((self.code, self.detail))


def too_large(limit: int) -> DoozerError:
    """``TOO_LARGE`` for a value over ``--max-value`` (``limit`` bytes): one
    wording wherever a body or value is refused."""
    return DoozerError(
        "TOO_LARGE",
        f"the value is larger than {limit} bytes (--max-value); doozer is for small values",
    )
