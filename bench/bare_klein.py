"""Reference server for bench/http_get.py: a bare Klein JSON handler.

It answers what doozer's GET answers, from a dict, with no access log: the
cost of Twisted + Klein + JSON alone, against which doozer's reads compare.
"""

import json
import sys

from klein import Klein
from twisted.internet import reactor
from twisted.web.server import Site

app = Klein()
VALUE = {"path": "/message", "rev": 3, "value": "hello, world", "len": 12}


@app.route("/v1/store/<path:path>")
def get(request, path):
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"X-Doozer-Rev", b"3")
    return json.dumps(VALUE, separators=(",", ":")).encode()


class QuietSite(Site):
    def log(self, request):
        pass


reactor.listenTCP(int(sys.argv[1]), QuietSite(app.resource()), interface="127.0.0.1")
reactor.run()
