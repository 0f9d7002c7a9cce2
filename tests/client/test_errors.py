"""Answers turned into typed errors (doozer/client/errors.py), whatever body
a node or a proxy in front of it sends."""

from __future__ import annotations

from doozer.client import NotFound, Other, RevMismatch, Unavailable, error_from_response


def test_error_bodies_that_are_not_doozer_json_still_become_typed_errors() -> None:
    """A proxy's HTML 404 is NotFound; an unknown code is Other; 503 text is Unavailable."""
    assert isinstance(error_from_response(404, b"<html>nope</html>"), NotFound)
    assert isinstance(error_from_response(500, b'{"error":"WAT","detail":"x"}'), Other)
    assert isinstance(error_from_response(503, b"busy"), Unavailable)
    err = error_from_response(409, b'{"error":"REV_MISMATCH","detail":"d","rev":4}')
    assert isinstance(err, RevMismatch) and err.rev == 4
