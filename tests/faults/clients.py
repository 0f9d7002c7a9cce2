"""What the fault suite's client threads share: one HTTP call, recorded as
an operation from the moment it is sent, and a stop for all of them.

Both the runner's workers (:mod:`tests.faults.workload`) and the lease
holders (:mod:`tests.faults.leaseload`) record each request they make; an
op's invoke time is when its connection opened, so a refused connection is
no operation at all, and a call that fails after it was sent is
indeterminate (the write may have happened).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any, Callable, Optional, TypeVar

#: The nodes' ``--write-timeout``: short, so that a lost majority answers
#: 503 quickly.
WRITE_TIMEOUT = 2.0
#: Client socket timeout: well above the write timeout.
CLIENT_TIMEOUT = WRITE_TIMEOUT + 6.0
#: What a call that went wrong on the way raises: connection trouble, a
#: garbled answer.
CALL_ERRORS = (OSError, http.client.HTTPException, ValueError)

Call = Callable[..., tuple[int, Any]]
O = TypeVar("O")
R = TypeVar("R")


def http_call(addr: str, method: str, path: str, body: Optional[bytes] = None,
              timeout: float = CLIENT_TIMEOUT,
              on_sent: Optional[Callable[[], None]] = None,
              headers: Optional[dict] = None) -> tuple[int, Any]:
    """One HTTP request; (status, JSON body or None). Raises OSError /
    http.client errors on connection trouble.

    ``on_sent`` is called once the connection is open, just before the
    request is written (the op's invoke time): a refused connection is no
    operation at all."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.connect()
        if on_sent is not None:
            on_sent()
        conn.request(method, path, body=body, headers={"Content-Type": "application/octet-stream", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("Content-Type", "")
        data = json.loads(raw) if ctype.startswith("application/json") and raw else None
        return resp.status, data
    finally:
        conn.close()


def recorded_call(call: Call, addr: str, method: str, path: str, body: Optional[bytes],
                  timeout: float, invoke: Callable[[], O], lost: Callable[[O, str], R],
                  answer: Callable[[O, int, Any], R]) -> Optional[R]:
    """One request through ``call`` (:func:`http_call`'s signature),
    recorded: ``invoke()`` makes the op when the request is sent; then
    ``answer(op, status, data)``, or ``lost(op, error name)`` when the call
    failed after it was sent. None when no connection opened (nothing was
    sent, nothing recorded)."""
    holder: list[O] = []

    def sent() -> None:
        holder.append(invoke())

    try:
        status, data = call(addr, method, path, body, timeout, on_sent=sent)
    except CALL_ERRORS as e:
        return lost(holder[0], type(e).__name__) if holder else None
    return answer(holder[0], status, data)


class ClientThreads:
    """Client threads started together and told to stop by one event.
    A subclass appends its threads to :attr:`threads`, then calls
    :meth:`start` of this class."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, seconds: float) -> None:
        """Stop every thread and wait at most ``seconds`` for all of them."""
        self.stop.set()
        deadline = time.monotonic() + seconds
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the run stops first; False if it did."""
        return not self.stop.wait(max(0.0, seconds))
