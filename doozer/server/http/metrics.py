"""``GET /metrics`` (SPEC §11): the node's :class:`~doozer.node.metrics.NodeMetrics`
in Prometheus's text format.

Behind the gate like every read: with secrets set it takes the read
secret (``ro`` or ``rw``), as the figures tell a lot about the cluster.
Served on the client port only, as the probes are (the WebView's paths
are store paths).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.web.iweb import IRequest

from doozer.node.metrics import NodeMetrics

__all__ = ["CONTENT_TYPE", "render"]

#: The text format's content type, the library's latest (``text/plain;
#: version=1.0.0; charset=utf-8`` with prometheus_client 0.26).
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("ascii")


def render(metrics: NodeMetrics, request: IRequest) -> bytes:
    """The body of a scrape; sets its content type."""
    body = metrics.render()
    request.setHeader(b"Content-Type", CONTENT_TYPE)
    return body
