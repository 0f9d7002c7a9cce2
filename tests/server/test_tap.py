"""``twistd doozer`` options (SPEC §5) and the plugin's discovery."""

from __future__ import annotations

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from doozer.server.tap import Options, build_config


def parse(*argv: str, env: dict | None = None) -> Options:
    opts = Options()
    opts.parseOptions(list(argv))
    if env is not None:
        opts["config"] = build_config(opts, env)
    return opts


def test_plugin_is_found() -> None:
    """twistd finds the doozer plugin among its service makers."""
    assert "doozer" in [p.tapname for p in getPlugins(IServiceMaker)]


def test_defaults_are_a_one_member_node_on_8046_and_8000() -> None:
    """No options: API on 127.0.0.1:8046, WebView on 127.0.0.1:8000, cluster 'local'."""
    config = parse(env={})["config"]
    assert config.listen == ("127.0.0.1", 8046)
    assert config.web == ("127.0.0.1", 8000)
    assert config.peers == []
    assert (config.cluster, config.timeout, config.fill, config.hist, config.pulse) == (
        "local", 60.0, 0.1, 2000, 1.0,
    )
    assert config.max_value == 32768


def test_every_spec_option_is_listed_in_help() -> None:
    """--help names every option of SPEC §5."""
    text = str(Options())
    for name in (
        "listen", "web", "peers", "cluster", "timeout", "fill", "hist", "pulse",
        "max-value", "rw-secret-file", "ro-secret-file", "tls-cert", "tls-key",
        "cluster-key-file", "insecure-peers",
    ):
        assert f"--{name}" in text, name


def test_web_follows_the_listen_host_and_can_be_disabled() -> None:
    """--web defaults to the listen host on port 8000; --web=false turns it off."""
    assert parse("--listen", "127.0.0.2:9000", env={})["config"].web == ("127.0.0.2", 8000)
    assert parse("--web=false", env={})["config"].web is None
    assert parse("--web", "127.0.0.1:9999", env={})["config"].web == ("127.0.0.1", 9999)


def test_peers_are_parsed() -> None:
    """--peers is a comma-separated list of HOST:PORT."""
    config = parse("--peers", "127.0.0.1:1,127.0.0.1:2", "--insecure-peers", env={})["config"]
    assert config.peers == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def key_file(tmp_path, *keys: bytes):
    path = tmp_path / "cluster.key"
    path.write_bytes(b"\n".join(keys) + b"\n")
    return str(path)


def test_peers_or_a_public_address_need_a_cluster_key(tmp_path) -> None:
    """SPEC §5: without --cluster-key-file a node with --peers or a
    non-loopback --listen refuses to start (saying how to make a key),
    unless --insecure-peers; a lone node on loopback needs none."""
    for argv in (["--peers", "127.0.0.1:1"], ["--listen", "10.0.0.1:8046"]):
        with pytest.raises(usage.UsageError, match="needs --cluster-key-file.*head -c 32"):
            parse(*argv, env={})
        assert parse(*argv, "--insecure-peers", env={})["config"].insecure_peers
        keyed = parse(*argv, "--cluster-key-file", key_file(tmp_path, b"k" * 32), env={})["config"]
        assert keyed.cluster_key == b"k" * 32 and not keyed.insecure_peers
    assert parse(env={})["config"].cluster_key is None


def test_a_key_file_may_hold_several_keys_the_first_seals(tmp_path) -> None:
    """Keys change by a rolling restart: every key in the file opens, the
    first one seals. Keys shorter than 16 bytes are refused."""
    config = parse("--cluster-key-file", key_file(tmp_path, b"n" * 32, b"", b"o" * 32), env={})["config"]
    assert config.cluster_keys == (b"n" * 32, b"o" * 32) and config.cluster_key == b"n" * 32
    with pytest.raises(usage.UsageError, match="shorter than 16"):
        parse("--cluster-key-file", key_file(tmp_path, b"short"), env={})
    with pytest.raises(usage.UsageError, match="holds no key"):
        parse("--cluster-key-file", key_file(tmp_path, b""), env={})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--listen", "0.0.0.0:8046"], "0.0.0.0"),
        (["--listen", "nonsense"], "HOST:PORT"),
        (["--max-value", "70000"], "at most 60000"),
        (["--hist", "x"], "number"),
        (["--tls-cert", "/nonexistent"], "go together"),
        (["--ro-secret-file", "/dev/null"], "empty"),
    ],
)
def test_bad_options_say_what_to_change(argv: list[str], message: str) -> None:
    """Each refused option has a message naming the problem."""
    with pytest.raises(usage.UsageError, match=message):
        parse(*argv, env={})


def test_secrets_from_environment_and_files(tmp_path) -> None:
    """Secrets come from DOOZER_RWSECRET/DOOZER_ROSECRET or from files."""
    config = parse(env={"DOOZER_RWSECRET": "a", "DOOZER_ROSECRET": "b"})["config"]
    assert (config.rw_secret, config.ro_secret) == (b"a", b"b")
    secret = tmp_path / "rw"
    secret.write_bytes(b"from-file\n")
    config = parse("--rw-secret-file", str(secret), env={})["config"]
    assert config.rw_secret == b"from-file"


def test_read_only_secret_alone_is_refused() -> None:
    """A read-only secret without a read-write one is a start-up error."""
    with pytest.raises(usage.UsageError, match="read-write"):
        parse(env={"DOOZER_ROSECRET": "b"})


def test_write_timeout_defaults_to_ten_seconds_and_reaches_the_node() -> None:
    """--write-timeout (not in SPEC §5) sets how long a write waits for its decision."""
    from twisted.internet.task import Clock

    from doozer.node import build_node

    assert parse(env={})["config"].write_timeout == 10.0
    config = parse("--write-timeout", "2.5", env={})["config"]
    assert config.write_timeout == 2.5
    assert build_node(config, Clock(), "N").write_timeout == 2.5
    with pytest.raises(usage.UsageError):
        parse("--write-timeout", "0", env={})


def test_listen_and_peers_take_ipv4_ipv6_and_host_names() -> None:
    """SPEC §5: HOST is an IPv4 address, an IPv6 address in brackets, or a
    host name, resolved at start-up; the node binds to the resolved address
    and keeps the name as given (it is what it advertises)."""
    config = parse("--listen", "LocalHost:8046", "--peers", "localhost:8047,127.0.0.2:8046",
                   "--insecure-peers", env={})["config"]
    assert config.listen == ("localhost", 8046)  # host names are case-insensitive
    assert config.bind == ("127.0.0.1", 8046)
    assert config.peers == [("localhost", 8047), ("127.0.0.2", 8046)]
    assert config.resolved == {"localhost": "127.0.0.1"}
    assert config.web == ("localhost", 8000) and config.ip_of(config.web) == ("127.0.0.1", 8000)
    config = parse("--listen", "[::1]:8046", "--peers", "[::1]:8047,[fe80::1]:8046",
                   "--insecure-peers", env={})["config"]
    assert config.bind == config.listen == ("::1", 8046)
    assert config.peers == [("::1", 8047), ("fe80::1", 8046)]
    assert config.web == ("::1", 8000)


def test_a_name_that_resolves_to_loopback_needs_no_cluster_key() -> None:
    """A loopback --listen needs no key, whether named by address or name."""
    assert parse("--listen", "localhost:8046", env={})["config"].bind == ("127.0.0.1", 8046)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--listen", "nowhere.invalid:8046"], "--listen: host name 'nowhere.invalid' does not resolve"),
        (["--peers", "127.0.0.1:9,nowhere.invalid:8047"],
         "--peers: host name 'nowhere.invalid' does not resolve to an IPv4 address"),
        (["--web", "nowhere.invalid:8000"], "--web: host name 'nowhere.invalid' does not resolve"),
        (["--listen", "::1:8046"], "IPv6 address goes in brackets"),
        (["--peers", "[::1:8047"], "IPv6 address goes in brackets"),
        (["--peers", "bad name:8047"], "neither an IP address nor a host name"),
        (["--peers", "[::1]:8047"], "not an IPv4 address like --listen's"),
        (["--listen", "[::1]:8046", "--peers", "10.0.0.2:8047"], "not an IPv6 address like --listen's"),
        (["--listen", "0.0.0.0:8046"], "not 0.0.0.0:8046"),
        (["--listen", "localhost:8046", "--peers", "10.0.0.2:8046"],
         "resolves to 127.0.0.1, a loopback address, but --peers names 10.0.0.2:8046"),
        (["--listen", "[::]:8046"], r"not \[::\]:8046"),
    ],
)
def test_bad_or_unresolvable_addresses_are_start_up_errors(argv: list, message: str) -> None:
    """Never a silent failure later: a name that does not resolve (the
    .invalid domain never does, RFC 6761), a mix of IPv4 and IPv6 (a UDP
    port speaks one family) or an unbracketed IPv6 address stops the node
    at start-up with a line saying which option and why."""
    with pytest.raises(usage.UsageError, match=message):
        parse(*argv, "--insecure-peers", env={})
