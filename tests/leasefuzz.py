"""The lease part of the process fuzz (tests/process/test_process.py): random
valid and hostile requests to every lease endpoint of SPEC §9 and
``PUT ?lease=``, each answer checked as it comes, and a model of what the
node must hold afterwards.

Every answer but a 200 must be a SPEC §3 error body whose code has that
status; where the request says which answer is right (a well-formed id no
lease has, a lease the fuzz holds, a ttl out of range) it must be that one.
Leases granted with a short ttl may expire while the fuzz runs: they are
renewed, read and revoked but hold no files, so the files the node must
hold at the end are exactly known (``/fl/...``, apart from the store fuzz's
``/fz/...``)."""

from __future__ import annotations

import json
import random
from typing import Any, Optional

from doozer.errors import STATUS

#: A ttl no fuzz run outlives: such a lease ends only when revoked.
LONG = 3600
FILES = ["/fl/a", "/fl/b", "/fl/c/d", "/fl/e"]
#: Ids that are not lease ids, as they go on the request line: empty, too
#: long (65 and 5,000 characters), slashes, dots, NUL, unicode (raw and
#: escaped), bytes that are not UTF-8, spaces, query and fragment marks.
#: (A raw non-ASCII request line is refused by Twisted's HTTP parser with
#: a bare 400 before any route sees it; everything else gets a SPEC body.)
BAD_IDS = ["", "x" * 65, "y" * 5000, "a/b", "a%2Fb", "..", ".", "%00", "a%00b", "\u00e9t\u00e9",
           "%C3%A9", "%ff", "a%20b", "a+b", "a;b", "%2e%2e", "a#b", "*", "~x"]
#: Well-formed ids that no lease has (ids the node makes are 16 characters).
FREE_IDS = ["x", "L1", "A" * 64, "_-_", "0" * 16]
TTLS: list[Any] = [0, -1, 3601, 10**30, -(10**30), 1.0, 30.5, "30", True, False, None, [30], {"s": 1}]


def ok_ttl(ttl: Any) -> bool:
    return type(ttl) is int and 1 <= ttl <= 3600


class LeaseFuzz:
    """The leases and leased files the node must have, and the checks."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.long: dict[str, set[str]] = {}  # lease -> its files
        self.short: list[str] = []  # may expire any time
        self.revoked: list[str] = []
        self.files: dict[str, tuple[bytes, Optional[str]]] = {}  # path -> (value, lease)
        self.counts = {"grant": 0, "renew": 0, "revoke": 0, "attach": 0}

    # -- requests ----------------------------------------------------------

    def request(self, port: int) -> tuple[bytes, tuple]:
        """One random lease request, and what it means."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.25:
            return self._grant(port)
        if kind < 0.45:
            return self._put(port)
        lease, expect = self._some_id()
        verb = rng.choice(["keepalive", "keepalive", "revoke", "get", "list", "junk"])
        method, path = {
            "keepalive": ("POST", f"/v1/lease/{lease}/keepalive"),
            "revoke": ("DELETE", f"/v1/lease/{lease}"),
            "get": ("GET", f"/v1/lease/{lease}"),
            "list": ("GET", "/v1/leases" + rng.choice(["", "", "?x=1", "?x=%ff", "/"])),
            "junk": (rng.choice(["PUT", "PATCH", "GET", "DELETE", "HEAD"]),
                     rng.choice([f"/v1/lease/{lease}/keepalive", "/v1/lease/" + lease + "/x"])),
        }[verb]
        if verb == "junk" and method == "GET" and path.endswith("/keepalive"):
            method = "PUT"
        if verb in ("keepalive", "revoke") and rng.random() < 0.1:
            method = rng.choice(["GET", "PUT", "PATCH"])  # the wrong method
            if verb == "revoke" and method == "GET":
                verb = "get"  # ...or a read, there
        body = rng.choice([b"", b"", b"{}", b"\xff" * 10, b"x" * 2000])
        return _http(method, path, body, port), ("lease", verb, method, lease, expect, path)

    def _some_id(self) -> tuple[str, str]:
        """An id and what it is: live (a long lease), short, revoked, free or bad."""
        rng = self.rng
        pick = rng.random()
        if pick < 0.35 and self.long:
            return rng.choice(sorted(self.long)), "live"
        if pick < 0.45 and self.short:
            return rng.choice(self.short), "short"
        if pick < 0.55 and self.revoked:
            return rng.choice(self.revoked), "free"
        if pick < 0.7:
            return rng.choice(FREE_IDS), "free"
        return rng.choice(BAD_IDS), "bad"

    def _grant(self, port: int) -> tuple[bytes, tuple]:
        rng = self.rng
        ttl: Any = rng.choice([LONG, LONG, LONG, 1, 2, 30] + TTLS)
        doc: Any = {"ttl": ttl}
        shape = rng.random()
        if shape < 0.05:
            doc = {"ttl": LONG, "x": 1}
        elif shape < 0.08:
            doc = {}
        elif shape < 0.1:
            doc = [doc]
        body = json.dumps(doc).encode()
        valid = isinstance(doc, dict) and set(doc) == {"ttl"} and ok_ttl(ttl)
        damage = rng.random()
        if damage < 0.04:
            body, valid = body[: rng.randrange(len(body))], False
        elif damage < 0.07:
            body, valid = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60))), False
        elif damage < 0.09:
            body, valid = b"[" * 100_000 + b"]" * 100_000, False  # deep, and past 1 KB
        elif damage < 0.11:
            body, valid = b'{"ttl": 30' + b" " * 1100 + b"}", False  # valid JSON past 1 KB
        elif damage < 0.13:
            body, valid = b'{"ttl": 1' + b"0" * 400 + b"}", False  # a 400-digit int
        method = "POST" if rng.random() < 0.95 else rng.choice(["GET", "PUT", "DELETE"])
        if method != "POST":
            valid = False
        return _http(method, "/v1/lease", body, port), ("grant", method, valid, ttl)

    def _put(self, port: int) -> tuple[bytes, tuple]:
        rng = self.rng
        path = rng.choice(FILES)
        value = rng.choice([b"", b"v", b"\x00\xff", b"w" * 100])
        lease, expect = self._some_id()
        if expect == "short":
            lease, expect = rng.choice(FREE_IDS), "free"  # short leases hold no files
        if not lease:
            expect = "none"  # ?lease= (empty): no lease
        sent = lease
        if ";" in lease:  # Twisted splits a query at ';' too: the id is "a"
            lease, expect = lease.split(";")[0], "free"
        query = rng.choice([f"?lease={sent}", f"?lease={sent}", "", "?lease=",
                            f"?lease={sent}&lease={sent}", f"?lease={sent}&rev=-1"])
        if query == "?lease=" or not query:
            lease, expect = "", "none"
        elif query.count("lease=") == 2:
            expect = "twice"
        method = "PUT" if rng.random() < 0.85 else "DELETE"
        return (_http(method, "/v1/store" + path + query, value, port),
                ("put", method, path, value, lease, expect))

    # -- answers -----------------------------------------------------------

    def check(self, request: bytes, meaning: tuple, reply: bytes, seed: int) -> None:
        """Check one answer against the request and move the model."""
        status, doc = _answer(reply)
        where = (seed, request[:300], reply[:400])
        line = request.partition(b"\r\n")[0]
        if not line.isascii():
            assert status == 400, where  # Twisted's parser: no route saw it
            return
        if status != 200 and not line.startswith(b"HEAD "):
            assert isinstance(doc, dict) and STATUS.get(doc.get("error")) == status, where
        if meaning[0] == "grant":
            _, method, valid, ttl = meaning
            if not valid:
                assert (status, doc["error"]) in ((400, "BAD_ARG"), (405, "METHOD_NOT_ALLOWED"),
                                                  (413, "TOO_LARGE")), where
                return
            assert status == 200 and doc["ttl"] == ttl and isinstance(doc["rev"], int), where
            (self.long.setdefault(doc["id"], set()) if ttl == LONG else self.short.append(doc["id"]))
            self.counts["grant"] += 1
        elif meaning[0] == "put":
            self._check_put(meaning, status, doc, where)
        else:
            self._check_lease(meaning, status, doc, where)

    def _check_put(self, meaning: tuple, status: int, doc: Any, where: Any) -> None:
        _, method, path, value, lease, expect = meaning
        if method == "DELETE":
            assert status in (200, 404), where  # ?lease= means nothing to a delete
            if status == 200:
                old = self.files.pop(path)
                if old[1]:
                    self.long[old[1]].discard(path)  # a delete detaches
            else:
                assert path not in self.files and doc["error"] == "NOENT", where
            return
        if expect == "bad" or expect == "twice":
            assert status == 400 and doc["error"] == "BAD_ARG", where
        elif expect == "free":
            assert status == 404 and doc["error"] == "NOENT" and lease in doc["detail"], where
        else:
            assert status == 200, where
            old = self.files.get(path)
            if old and old[1]:
                self.long[old[1]].discard(path)
            self.files[path] = (value, lease or None)
            if lease:
                self.long[lease].add(path)
                self.counts["attach"] += 1

    def _check_lease(self, meaning: tuple, status: int, doc: Any, where: Any) -> None:
        _, verb, method, lease, expect, path = meaning
        if verb == "list":
            if path == "/v1/leases/":
                assert status == 404, where  # no endpoint
            elif path == "/v1/leases" or status != 400:
                assert status == 200, where
                ids = {x["id"] for x in doc["leases"]}
                assert set(self.long) <= ids and not ids & set(self.revoked), where
            return
        if verb == "junk" or method not in ("POST", "DELETE", "GET"):
            assert 400 <= status < 500, where
            return
        if expect == "bad":
            # a malformed id, a URL that is not UTF-8, or no endpoint at all
            assert (status, doc["error"]) in ((400, "BAD_ARG"), (400, "BAD_PATH"), (404, "NOT_FOUND"),
                                              (405, "METHOD_NOT_ALLOWED")), where
            return
        if (verb, method) not in (("keepalive", "POST"), ("revoke", "DELETE"), ("get", "GET")):
            assert status == 405, where
            return
        if expect == "free":
            assert status == 404 and doc["error"] == "NOENT", where
            return
        if expect == "short":
            assert status in (200, 404), where
            if verb == "revoke" and status == 200:
                self.short.remove(lease)
                self.revoked.append(lease)
            return
        assert status == 200 and doc["id"] == lease, where
        if verb == "keepalive":
            assert doc["ttl"] == LONG, where
            self.counts["renew"] += 1
        elif verb == "get":
            assert doc["files"] == sorted(self.long[lease]), where
        else:
            for path in self.long.pop(lease):
                del self.files[path]
            self.revoked.append(lease)
            self.counts["revoke"] += 1

    # -- the end -----------------------------------------------------------

    def check_node(self, node: Any, seed: int) -> None:
        """The node holds exactly the modelled leased files and long leases."""
        import base64

        status, walk = node.request("GET", "/v1/walk?glob=/fl/**&limit=1000")
        assert status == 200
        held = {f["path"]: base64.b64decode(f["value"]) if f.get("encoding") == "base64"
                else f["value"].encode() for f in walk["files"]}
        assert held == {p: v for p, (v, _) in self.files.items()}, seed
        status, doc = node.request("GET", "/v1/leases")
        assert status == 200
        listed = {x["id"]: x for x in doc["leases"]}
        for lease, files in self.long.items():
            assert listed[lease]["files"] == sorted(files) and listed[lease]["ttl"] == LONG, seed
        assert not set(listed) & set(self.revoked), seed
        assert set(listed) <= set(self.long) | set(self.short), seed


def _http(method: str, path: str, body: bytes, port: int) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("utf-8") + body


def _answer(reply: bytes) -> tuple[int, Any]:
    """The status and decoded JSON body (``None`` if it is not JSON) of a reply."""
    status = int(reply[9:12])
    raw = reply.partition(b"\r\n\r\n")[2]
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None
