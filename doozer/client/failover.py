"""Sending one request to a doozer cluster: failover across its addresses.

:class:`Failover` sends a request to the address that answered last and, on
a connection error, a timeout or a ``503``, to the next one, once round the
list. Any other answer is final. Every attempt is bounded by a timeout on
the injected clock. :class:`doozer.client.Client` builds the verbs on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, TypeVar

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web._newclient import RequestNotSent, RequestTransmissionFailed
from twisted.web.client import ResponseFailed

from doozer.client.errors import ClientError, Unavailable, Unreachable, error_from_response

T = TypeVar("T")

#: Seconds added to a request's own server-side wait (long-poll, future-rev
#: read) before the client gives up on the attempt.
GRACE = 5.0


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, and the base URL of the node that gave it."""

    status: int
    headers: Any
    body: bytes
    base: str


class AttemptFailed(Exception):
    """One address did not answer; ``sent`` if the request may have arrived."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class Failover:
    """Sends requests to the first of ``bases`` that answers.

    :param bases: node base URLs (``http://host:port``), tried in turn.
    :param http: a treq-like object (``request(method, url, params=, data=,
        headers=)``).
    :param clock: ``callLater``/``seconds`` provider for the timeouts.
    :param secret: presented as ``Authorization: Bearer`` when given.
    :param timeout: seconds one address may take before the next is tried.
    """

    def __init__(
        self,
        bases: Sequence[str],
        http: Any,
        clock: IReactorTime,
        *,
        secret: Optional[str] = None,
        timeout: float = 10.0,
    ) -> None:
        self.bases = tuple(b.rstrip("/") for b in bases)
        self.http = http
        self.clock = clock
        self.secret = secret
        self.timeout = timeout
        self._current = 0

    @property
    def current(self) -> str:
        """The base URL tried first (the last that answered)."""
        return self.bases[self._current]

    async def call(
        self,
        method: str,
        url_path: str,
        params: Sequence[tuple[str, str]] = (),
        data: Optional[bytes] = None,
        *,
        write: bool = False,
        wait: float = 0.0,
    ) -> Reply:
        """Send one request, failing over across the addresses.

        :param write: the request changes the store (affects ``indeterminate``).
        :param wait: seconds the server may legitimately hold the request.
        :returns: the first non-503 answer (any status).
        :raises Unreachable, ReadOnly, Unavailable: when no address answered.
        """
        problems: list[str] = []
        sent = False
        last_503: Optional[ClientError] = None
        count = len(self.bases)
        for step in range(count):
            index = (self._current + step) % count
            base = self.bases[index]
            try:
                reply = await self._attempt(base, method, url_path, params, data, wait)
            except AttemptFailed as failed:
                problems.append(f"{base}: {failed.reason}")
                sent = sent or failed.sent
                continue
            if reply.status == 503:
                error = error_from_response(reply.status, reply.body, base)
                problems.append(f"{base}: {error.code} {error.detail}")
                if last_503 is None or isinstance(error, Unavailable):
                    last_503 = error
                continue
            self._current = index
            return reply
        if last_503 is not None and not (write and sent):
            if count > 1:
                last_503.detail = "; ".join(problems)
            raise last_503
        raise Unreachable(
            "no node answered: " + "; ".join(problems),
            indeterminate=write and (sent or last_503 is not None),
        )

    async def _attempt(
        self,
        base: str,
        method: str,
        url_path: str,
        params: Sequence[tuple[str, str]],
        data: Optional[bytes],
        wait: float,
    ) -> Reply:
        """One request to one address, within the timeout.

        :raises AttemptFailed: the address did not answer.
        """
        headers: dict[str, list[str]] = {}
        if self.secret:
            headers["Authorization"] = [f"Bearer {self.secret}"]
        limit = self.timeout + wait + (GRACE if wait else 0.0)

        async def exchange() -> Reply:
            response = await self.http.request(
                method, base + url_path, params=list(params), data=data, headers=headers
            )
            body = await response.content()
            return Reply(response.code, response.headers, body, base)

        attempt = ensureDeferred(exchange())
        attempt.addTimeout(limit, self.clock)
        try:
            return await _cancel_cleanly(attempt)
        except TimeoutError:
            raise AttemptFailed(f"no answer within {limit:g}s", sent=True) from None
        except CancelledError:
            raise
        except (ConnectError, DNSLookupError, RequestNotSent) as e:
            raise AttemptFailed(_describe(e), sent=False) from None
        except (ResponseFailed, RequestTransmissionFailed, ConnectionClosed) as e:
            raise AttemptFailed(_describe(e), sent=True) from None


def _cancel_cleanly(inner: "Deferred[T]") -> "Deferred[T]":
    """``inner``'s result, except that cancelling fails with ``CancelledError``.

    Cancelling an HTTP request makes the agent fail with a transport error;
    without this a caller's cancel would look like a dead node and fail over.
    """
    cancelled = False

    def cancel(_: Any) -> None:
        nonlocal cancelled
        cancelled = True
        inner.cancel()

    outer: Deferred[T] = Deferred(cancel)

    def relay(result: Any) -> None:
        if outer.called:
            return
        if cancelled:
            outer.errback(CancelledError())
        elif isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)

    inner.addBoth(relay)
    return outer


def _describe(error: BaseException) -> str:
    """A short human description of a connection failure."""
    if isinstance(error, ResponseFailed) and error.reasons:
        return "; ".join(_describe(r.value) for r in error.reasons)
    if isinstance(error, RequestTransmissionFailed) and error.reasons:
        return "; ".join(_describe(r.value) for r in error.reasons)
    text = str(error).strip() or type(error).__name__
    return text.replace("\n", " ")
