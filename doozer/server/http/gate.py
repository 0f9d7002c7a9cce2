"""The resource in front of the API's routes: the peers' endpoints, the
secrets, then the routes (SPEC §3's order of errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from doozer.errors import DoozerError
from doozer.server.auth import PEER_CONSENSUS, PEER_SNAPSHOT, body_mac, check_peer
from doozer.server.http.render import _finish, json_response, serve

#: SPEC §11's probes, which need no secret: they tell whether the node is
#: live and ready, nothing of the store.
PROBES = (b"/livez", b"/readyz")

if TYPE_CHECKING:  # the API puts the gate in front of its routes; typing only
    from doozer.server.http.api import API
    from doozer.server.http.site import CappedRequest


class Gate(Resource):
    """Stands in front of the Klein routes: secrets first, then the routes.

    SPEC §3 orders errors: authentication, then endpoint and method, then
    arguments. The probes (``/livez``, ``/readyz``) need no secret (§11).
    Klein would answer a non-UTF-8 URL itself, in HTML; the gate answers
    it in JSON first.

    The busiest requests (reads of the store, watches) skip Klein: when
    ``api.direct(request)`` names the route Klein would certainly pick, the
    gate calls it itself. Klein's routing (werkzeug binding and matching,
    its Deferreds and closures) costs more than the rest of a read, and
    every held watch would keep all of it in memory.
    """

    isLeaf = True

    def __init__(self, routes: IResource, api: "API") -> None:
        super().__init__()
        self._routes = routes
        self._api = api

    def direct(self, request: Any) -> bool:
        """Whether ``request`` goes to a direct route, which a lean request
        (:mod:`doozer.server.http.lean`) may serve: the gate's own checks
        and that route use nothing of ``twisted.web``'s request. The route
        is kept on the request for :meth:`render`."""
        route = request.doozer_route = self._api.direct(request)
        return route is not None

    def render(self, request: "CappedRequest") -> Any:
        if request.path == PEER_SNAPSHOT and not self._api.readonly:
            return self._render_snapshot(request)
        if request.path == PEER_CONSENSUS and not self._api.readonly:
            return self._render_consensus(request)
        try:
            path = request.path
            if path not in PROBES:
                self._api.secrets.check_read(request)
            if b"%" in path or not path.isascii():
                try:
                    unquote_to_bytes(path).decode("utf-8")
                except UnicodeDecodeError:
                    raise DoozerError("BAD_PATH", "the URL is not valid UTF-8") from None
        except DoozerError as e:
            return json_response(request, self._api.node, e)
        route = getattr(request, "doozer_route", None) or self._api.direct(request)
        if route is not None:
            return serve(request, route(request))
        return self._routes.render(request)

    def _render_consensus(self, request: IRequest) -> bytes:
        """This node's consensus state, for operators and the fault suite
        diagnosing a stalled log (not a public endpoint; peers' credentials)."""
        node = self._api.node
        try:
            check_peer(request, self._api.peer_tokens, self._api.secrets.rw,
                       self._api.insecure_peers)
            if node.sequencer is None:
                raise DoozerError("READONLY", "this node is in no cluster yet")
            state = node.sequencer.debug_state()
        except DoozerError as e:
            return json_response(request, node, e)
        state["applied_seqn"] = node.applied_seqn
        state["node_counters"] = dict(node.counters)
        if node.transport_state is not None:
            state["transport"] = node.transport_state()
        return json_response(request, node, state)

    def _render_snapshot(self, request: IRequest) -> bytes:
        """A node snapshot for a joining or lagging peer (not a public endpoint)."""
        node = self._api.node
        try:
            nonce = check_peer(request, self._api.peer_tokens, self._api.secrets.rw,
                               self._api.insecure_peers)
            body = node.snapshot().encode()
        except DoozerError as e:
            return json_response(request, node, e)
        request.setHeader(b"Content-Type", b"application/x-msgpack")
        if nonce is not None and self._api.cluster_key is not None:
            # The whole answer (the cluster id is in it) bound to this request.
            tag = body_mac(self._api.cluster_key, nonce, body)
            request.setHeader(b"X-Doozer-Snapshot-Mac", tag.encode())
        return _finish(request, node, body)
