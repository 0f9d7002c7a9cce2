"""doozer: and http(s): URIs as the client reads them (doozer/client/uri.py)."""

from __future__ import annotations

import pytest

from doozer.client import BadURI, connect, parse_uri


def test_doozer_uri_lists_every_ca_in_order_with_the_secret() -> None:
    """A doozer: URI gives one base URL per ca, in order, and the sk secret."""
    target = parse_uri("doozer:?ca=10.0.0.1:8046&ca=10.0.0.2:9000&sk=s3cret")
    assert target.bases == ("http://10.0.0.1:8046", "http://10.0.0.2:9000")
    assert target.secret == "s3cret"


def test_doozer_uri_ca_without_port_uses_8046() -> None:
    """A ca without a port means doozerd's port 8046."""
    assert parse_uri("doozer:?ca=localhost").bases == ("http://localhost:8046",)


def test_http_and_https_urls_are_single_addresses() -> None:
    """http(s)://HOST:PORT is one address, trailing slash allowed."""
    assert parse_uri("http://127.0.0.1:8046/").bases == ("http://127.0.0.1:8046",)
    assert parse_uri("https://db.example:443").bases == ("https://db.example:443",)


@pytest.mark.parametrize(
    "uri", ["doozer:?sk=x", "ftp://h:1", "http://h:1/v1/store", "doozer:?ca=h:notaport", "h:1"]
)
def test_unusable_uris_are_refused(uri: str) -> None:
    """A URI with no usable address or another scheme raises BadURI."""
    with pytest.raises(BadURI):
        connect(uri)
