"""The deployment files in deploy/ (docs/operations.md, "Deployment files"):
each parses, is what its section says, and names only options that exist.

- ``deploy/doozer.service``: read as an INI file, and checked by
  ``systemd-analyze verify`` where that is installed (with ExecStart's
  program pointed at this machine's twistd: verify refuses a unit whose
  program is missing);
- ``deploy/Containerfile``: its instructions, its JSON ENTRYPOINT/CMD and
  the paths it copies;
- ``deploy/k8s/``: read with the YAML subset of :mod:`yamlutil` (and by
  PyYAML too where installed); a StatefulSet with a headless Service and a
  readiness probe on /readyz; its start script run with stand-ins for
  ``getent`` and ``twistd`` to see the command line it makes.

Every ``--option`` given to ``twistd`` or ``twistd doozer`` in these files,
comments included, must be one the programs have.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from typing import Any

import pytest

import yamlutil
from doozer.addr import parse_addr
from doozer.server.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
UNIT = os.path.join(DEPLOY, "doozer.service")
CONTAINERFILE = os.path.join(DEPLOY, "Containerfile")
K8S = os.path.join(DEPLOY, "k8s")

#: Options of other programs that the files' comments use (podman/docker, kubectl).
OTHER_TOOLS = {"rm", "network", "from-file", "home-dir", "create-home", "system", "uid",
               "no-cache-dir", "wheel-dir", "from"}


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def doozer_options() -> set[str]:
    return set(Options().synonyms)


def twistd_options() -> set[str]:
    from twisted.scripts.twistd import ServerOptions

    return set(ServerOptions().synonyms)


def check_command(argv: list[str]) -> None:
    """``twistd [twistd options] doozer [doozer options]``: every option is
    one of those programs', and every --listen/--peers value that is not a
    shell variable is a valid HOST:PORT list."""
    assert os.path.basename(argv[0]) == "twistd", argv
    split = argv.index("doozer")
    for options, known in ((argv[1:split], twistd_options()), (argv[split + 1:], doozer_options())):
        for i, word in enumerate(options):
            if word.startswith("--"):
                name = word[2:].split("=", 1)[0]
                assert name in known, f"{word} is not an option of {argv[0] if known != doozer_options() else 'twistd doozer'}"
                if name in ("listen", "peers") and "$" not in options[i + 1]:
                    for addr in options[i + 1].split(","):
                        parse_addr(addr)


def test_every_option_named_in_the_files_exists() -> None:
    """Comments too: an example that names a removed option misleads."""
    known = doozer_options() | twistd_options() | OTHER_TOOLS
    files = [UNIT, CONTAINERFILE] + [os.path.join(K8S, f) for f in sorted(os.listdir(K8S))]
    for path in files:
        for name in re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", read(path)):
            assert name in known, f"{os.path.relpath(path, ROOT)} names --{name}, which no program has"


# -- systemd -------------------------------------------------------------------


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(read(UNIT))
    return parser


def test_unit_file_runs_twistd_doozer_in_the_foreground() -> None:
    parsed = unit()
    assert parsed.sections() == ["Unit", "Service", "Install"]
    service = parsed["Service"]
    argv = shlex.split(service["ExecStart"])
    assert os.path.isabs(argv[0])
    check_command(argv)
    assert "--nodaemon" in argv and "--pidfile=" in argv  # systemd supervises the process itself
    assert service["Restart"] == "on-failure"  # a node exits 1 on a full disk (SPEC §8)
    assert "--data-dir" in argv and "/var/lib/doozer" in argv and service["StateDirectory"] == "doozer"
    # The variables ExecStart uses are the ones the comment tells to set.
    comment = "\n".join(line for line in read(UNIT).splitlines() if line.startswith("#"))
    for var in re.findall(r"\$\{(\w+)\}", service["ExecStart"]):
        assert f"{var}=" in comment, var
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_unit_file_passes_systemd_analyze_verify(tmp_path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit is still parsed above)")
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.access(twistd, os.X_OK):
        pytest.skip(f"no twistd next to {sys.executable} to point ExecStart at")
    text = read(UNIT).replace("/opt/doozer/bin/twistd", twistd)
    assert text != read(UNIT)
    copy = tmp_path / "doozer.service"
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "doozer.service" not in output, output  # no warning about the unit either


# -- container -----------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "COPY", "ADD", "USER", "WORKDIR", "VOLUME", "EXPOSE", "ENV",
                "ENTRYPOINT", "CMD", "LABEL", "ARG", "HEALTHCHECK", "STOPSIGNAL", "SHELL"}


def container_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", read(CONTAINERFILE))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word, rest.strip()))
    return out


def test_containerfile_builds_the_package_and_runs_twistd_doozer() -> None:
    steps = container_instructions()
    for word, _ in steps:
        assert word in INSTRUCTIONS, f"unknown instruction {word}"
    assert [w for w, _ in steps].count("FROM") == 2 and steps[0][0] == "FROM"
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from="):
            source = rest.split()[0]
            assert os.path.exists(os.path.join(ROOT, source)), source  # built from the root
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    check_command(entry + cmd)
    exposed = dict(steps)["EXPOSE"].split()
    assert "8046/tcp" in exposed and "8046/udp" in exposed  # API and peers share the port
    assert dict(steps)["USER"] != "root"
    # The run example in the comment is a whole command line of valid options.
    comment = re.sub(r"\\\n#\s*", " ", read(CONTAINERFILE))
    example = next(line for line in comment.splitlines() if "podman run" in line)
    argv = shlex.split(example.lstrip("# "))
    image = argv.index("doozer", argv.index("run"))
    check_command(entry + argv[image + 1:])


# -- Kubernetes ----------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for name in sorted(os.listdir(K8S)):
        assert name.endswith(".yaml"), name
        docs += yamlutil.load_all(read(os.path.join(K8S, name)))
    return docs


def test_k8s_example_is_a_statefulset_with_a_headless_service_and_a_readyz_probe() -> None:
    docs = k8s_documents()
    kinds = {d["kind"]: d for d in docs if d["kind"] != "Service"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    sts = kinds["StatefulSet"]
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    # Names resolve before any node is ready (a node is ready only in a cluster).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {(p["port"], p["protocol"]) for p in headless["spec"]["ports"]} == {(8046, "TCP"), (8046, "UDP")}
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"] == labels
    for service in services.values():
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    [container] = sts["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8046}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 8046}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/var/lib/doozer"
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    secret = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}["cluster-key"]
    assert secret["secret"]["defaultMode"] == 0o400


def test_k8s_start_script_makes_the_right_command_line(tmp_path) -> None:
    """Run the container's script as pod doozer-1 of namespace prod, with a
    ``getent`` that answers every name and a ``twistd`` that prints its
    arguments: it listens on its own name and names the other two pods."""
    sts = next(d for d in k8s_documents() if d["kind"] == "StatefulSet")
    [container] = sts["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "getent").write_text("#!/bin/sh\necho 10.1.2.3 \"$2\"\n")
    (stubs / "twistd").write_text(
        f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
        "'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\"\n"
    )
    for stub in stubs.iterdir():
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "POD_NAME": "doozer-1", "POD_NAMESPACE": "prod"}
    done = subprocess.run(["/bin/sh", "-c", container["args"][0]], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    argv = ["twistd", *json.loads(done.stdout)]
    check_command(argv)
    domain = "doozer.prod.svc.cluster.local"
    assert argv[argv.index("--listen") + 1] == f"doozer-1.{domain}:8046"
    assert argv[argv.index("--peers") + 1] == f"doozer-0.{domain}:8046,doozer-2.{domain}:8046"
    assert argv[argv.index("--cluster-key-file") + 1] == "/etc/doozer/cluster.key"


def test_yaml_subset_reader_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (not a dependency)")
    for name in sorted(os.listdir(K8S)):
        text = read(os.path.join(K8S, name))
        assert yamlutil.load_all(text) == list(yaml.safe_load_all(text)), name


@pytest.mark.parametrize(
    "text, why",
    [
        ("a: {b: 1}", "outside the subset"),
        ("a: 0400", "YAML 1.1 and 1.2"),
        ("a: 1\na: 2", "twice"),
        ("a:\n  b: 1\n    c: 2", "indentation"),
        ("a: &x 1", "outside the subset"),
    ],
)
def test_yaml_subset_reader_refuses_what_it_does_not_know(text: str, why: str) -> None:
    with pytest.raises(yamlutil.YAMLSubsetError, match=why):
        yamlutil.load_all(text)


def test_yaml_subset_reader() -> None:
    text = "# c\na: 1\nb:\n  - x\n  - k: 'it''s'\n    l: [\"p\", 2]\nc: |\n  one\n\n  two # kept\nd: true\n---\n- 2\n"
    assert yamlutil.load_all(text) == [
        {"a": 1, "b": ["x", {"k": "it's", "l": ["p", 2]}], "c": "one\n\ntwo # kept\n", "d": True},
        [2],
    ]
