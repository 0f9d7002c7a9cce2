"""Drive a node's API in memory: StubTreq + the node's Clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from twisted.internet.task import Clock

from doozer.node import Node
from doozer.testing import single_node, stub_api


@dataclass
class Reply:
    """One HTTP response as the tests see it."""

    code: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class Harness:
    """A one-member node on a Clock with an in-memory HTTP client."""

    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        stub_settings = {
            k: settings.pop(k) for k in ("rw", "ro", "readonly") if k in settings
        }
        self.node: Node = single_node(self.clock, **settings)
        self.stub = stub_api(self.node, **stub_settings)

    def settle(self) -> None:
        """Let the node decide and the responses travel."""
        for _ in range(4):
            self.stub.flush()
            self.clock.advance(0)
        self.stub.flush()

    def start(
        self, method: str, url: str, body: Optional[bytes] = None, settle: bool = True, **headers: str
    ) -> list:
        """Send a request without waiting; the returned list gets the Reply."""
        out: list = []
        hdrs = {k.replace("_", "-"): [v] for k, v in headers.items()}
        d = self.stub.request(method, "http://doozer" + url, data=body, headers=hdrs)
        d.addCallback(
            lambda r: r.content().addCallback(lambda b: out.append(Reply(r.code, r.headers, b)))
        )
        d.addErrback(out.append)
        if settle:
            self.settle()
        return out

    def call(self, method: str, url: str, body: Optional[bytes] = None, **headers: str) -> Reply:
        """Send a request and return its reply (it must have answered)."""
        out = self.start(method, url, body, **headers)
        assert out, f"{method} {url} did not answer"
        if not isinstance(out[0], Reply):
            out[0].raiseException()
        return out[0]

    def put(self, path: str, body: bytes, **query: Any) -> Reply:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return self.call("PUT", f"/v1/store{path}" + (f"?{qs}" if qs else ""), body)

    def get(self, url: str, **headers: str) -> Reply:
        return self.call("GET", url, **headers)
