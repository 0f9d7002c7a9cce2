"""The commands of ``doozer`` (SPEC §4): one ``async def`` per command, and
the table of them (:data:`COMMANDS`) that :mod:`doozer.client.cli` parses
against, runs and documents.

A command is registered with :func:`command`: its name, its arguments, a
summary line and its help; it gets a :class:`Context` (the client, the
options, stdout) and its arguments as strings. It writes its output with
:meth:`Context.write` or :meth:`Context.line` and fails by raising: a
:class:`~doozer.errors.DoozerError` from the node, :class:`UsageError` for a
bad argument, :class:`CommandError` for a failure on this side. The CLI turns
each into one line on stderr and an exit status. A command registered with
``offline=True`` runs with no client (``ctx.client`` is None): nothing is
connected to, and ``-a`` is not looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, BinaryIO, Callable, Optional, Union

from doozer.client.errors import NoEnt
from doozer.client.types import Event
from doozer.storage.files import write_atomically

USAGE = """\
usage: doozer [-a URI] [-r REV] [-t DURATION] [-l ID] COMMAND [ARGS]

options:
  -a URI       where the cluster is: doozer:?ca=HOST:PORT&ca=HOST:PORT&sk=SECRET
               or http(s)://HOST:PORT (default: $DOOZER_URI, else
               doozer:?ca=127.0.0.1:8046)
  -r REV       read at REV (get, stat, find) or start there (wait, watch)
  -t DURATION  how long wait may wait: 30, 30s, 1m30s (default: forever)
  -l ID        attach the file to lease ID (set, add); also --lease=ID

commands:
{commands}

Exit status: 0 success, 1 rev mismatch, 2 any other error.
Run 'doozer help COMMAND' for one command's details.
"""


class UsageError(Exception):
    """The command line is wrong; the message says how."""


class CommandError(Exception):
    """A command failed on this side (a damaged backup, a file it cannot
    write); the message says what and where."""


@dataclass
class Options:
    """A parsed command line."""

    uri: str = ""
    rev: Optional[int] = None
    timeout: Optional[float] = None
    #: ``-l ID``: the lease ``set`` and ``add`` attach the file to
    lease: Optional[str] = None
    command: str = ""
    args: list[str] = field(default_factory=list)
    #: the command's own ``--NAME VALUE`` options (:attr:`Command.flags`)
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """What a command runs with: the client, the options, the output streams."""

    client: Any  # None for an offline command
    options: Options
    out: BinaryIO
    stdin: bytes = b""
    reactor: Any = None

    def write(self, data: bytes) -> None:
        """Write to stdout and flush (watch output must appear at once)."""
        self.out.write(data)
        self.out.flush()

    def line(self, text: object) -> None:
        """Write one line of text."""
        self.write(f"{text}\n".encode("utf-8"))


@dataclass(frozen=True)
class Command:
    """One command: its argument names, a summary line, and its help."""

    name: str
    args: tuple[str, ...]
    summary: str
    doc: str
    run: Callable[..., Awaitable[None]]
    #: stdin is read whole first; a callable decides from the arguments
    #: (``txn -`` reads it, ``txn FILE`` does not)
    reads_stdin: Union[bool, Callable[[list[str]], bool]] = False
    #: runs without a client: no URI, no connection (``ctx.client`` is None)
    offline: bool = False
    #: its own options, each ``--NAME VALUE`` (``restore --data-dir DIR``)
    flags: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {}


def command(
    name: str, args: str, summary: str, doc: str,
    reads_stdin: Union[bool, Callable[[list[str]], bool]] = False,
    offline: bool = False, flags: tuple[str, ...] = (),
) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
    """Register an ``async def run(ctx, *args)`` as a command.

    :param args: its arguments as help shows them, ``[NAME]`` optional
        (``"PATH REV"``, ``"[COMMAND]"``); their count is checked before
        it runs.
    :param reads_stdin: stdin is read whole first (``ctx.stdin``); or a
        function of the arguments saying whether it is.
    :param offline: it needs no cluster: run with ``ctx.client`` None.
    :param flags: the names of its own ``--NAME VALUE`` options (in
        ``ctx.options.flags``); any other ``--NAME`` is a usage error.
    """

    def register(run: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        COMMANDS[name] = Command(name, tuple(args.split()), summary, doc, run, reads_stdin,
                                 offline, flags)
        return run

    return register


# ----------------------------------------------------------------------
# arguments and output


def parse_int(text: str, what: str, minimum: Optional[int] = None) -> int:
    """``text`` as an integer (at least ``minimum``), or a UsageError naming ``what``."""
    if not re.fullmatch(r"-?\d+", text.strip()):
        raise UsageError(f"{what} must be an integer, not {text!r}")
    value = int(text)
    if minimum is not None and value < minimum:
        raise UsageError(f"{what} must be at least {minimum}, not {value}")
    return value


def format_event(event: Event) -> bytes:
    """doozer's event format: ``PATH REV set|del LEN``, the body, a line feed."""
    body = event.value or b""
    return f"{event.path} {event.rev} {event.op} {len(body)}\n".encode("utf-8") + body + b"\n"


# ----------------------------------------------------------------------
# the commands

_SEE_R = "With -r REV, reads the store as of REV."


@command("get", "PATH", "print a file's body", f"Prints the file's bytes exactly, with nothing added. {_SEE_R}\nA directory or a missing file is an error (exit 2).")
async def _get(ctx: Context, path: str) -> None:
    f = await ctx.client.get_raw(path, ctx.options.rev)
    ctx.write(f.value)


@command("set", "PATH REV", "write stdin to a file, print its new rev",
         "Reads the new body from stdin and writes it if the file's rev is at most REV\n"
         "(0: only if missing; -1: whatever it is). Prints the file's new rev.\n"
         "A failed precondition exits 1. With -l ID, attaches the file to lease ID.",
         reads_stdin=True)
async def _set(ctx: Context, path: str, rev: str) -> None:
    ctx.line(await ctx.client.set(path, ctx.stdin, parse_int(rev, "REV"), lease=ctx.options.lease))


@command("add", "PATH", "create a file from stdin (set PATH 0)",
         "Like 'set PATH 0': creates the file with stdin as its body; exits 1 if it\n"
         "already exists. Prints the new rev. With -l ID, attaches the file to lease ID.",
         reads_stdin=True)
async def _add(ctx: Context, path: str) -> None:
    ctx.line(await ctx.client.set(path, ctx.stdin, 0, lease=ctx.options.lease))


@command("lease", "VERB [ARG]", "grant, renew, revoke or list leases (SPEC §9)",
         "doozer lease grant TTL     grants a lease of TTL seconds (1-3600), prints its id\n"
         "doozer lease keepalive ID  renews it every ttl/3 until interrupted; exits 2\n"
         "                           once it is gone or no renewal was confirmed for ttl\n"
         "doozer lease revoke ID     ends it: its files are deleted at one rev (printed)\n"
         "doozer lease list          prints 'ID TTL PATH...' for every lease\n"
         "Attach files with 'set -l ID' or 'add -l ID'.")
async def _lease(ctx: Context, verb: str, arg: str = "") -> None:
    from doozer.client.lease_cli import run_lease

    await run_lease(ctx, verb, arg)


@command("del", "PATH REV", "delete a file",
         "Deletes the file if its rev is at most REV (-1: whatever it is).\n"
         "A failed precondition exits 1; a missing file exits 2.")
async def _del(ctx: Context, path: str, rev: str) -> None:
    await ctx.client.delete(path, parse_int(rev, "REV"))


@command("txn", "FILE", "apply the transaction in FILE.json (- for stdin), print its rev",
         "FILE holds a transaction as SPEC §10 and docs/api.md give it:\n"
         '  {"compare": [{"path": "/leader", "rev": 0}],\n'
         '   "ops": [{"op": "set", "path": "/leader", "value": "n1"},\n'
         '           {"op": "del", "path": "/cfg/old"}]}\n'
         "Every op is applied at one rev if every compare holds and every op can be\n"
         "applied, else nothing; prints that rev. A failed compare exits 1, any other\n"
         "failure 2; the error names the compare or op at fault.",
         reads_stdin=lambda args: args[:1] == ["-"])
async def _txn(ctx: Context, path: str) -> None:
    if path == "-":
        body = ctx.stdin
    else:
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    ctx.line(await ctx.client.txn_json(body))


@command("rev", "", "print the store's current rev", "Prints the node's applied rev.")
async def _rev(ctx: Context) -> None:
    ctx.line(await ctx.client.rev())


@command("stat", "PATH", "print 'REV LEN' for a file, 'd N' for a directory",
         f"For a file prints its rev and length in bytes; for a directory 'd' and its\n"
         f"number of entries. {_SEE_R}")
async def _stat(ctx: Context, path: str) -> None:
    st = await ctx.client.stat(path, ctx.options.rev)
    ctx.line(f"d {st.len}" if st.dir else f"{st.rev} {st.len}")


@command("find", "PATH", "print every file and directory under PATH",
         "Prints PATH and every directory and file below it, one per line, in tree\n"
         f"order (parents before children, names sorted). {_SEE_R}")
async def _find(ctx: Context, path: str) -> None:
    rev = ctx.options.rev or await ctx.client.rev()
    st = await ctx.client.stat(path, rev)
    if not st.dir:
        ctx.line(path)
        return
    walk = await ctx.client.walk("/**" if path == "/" else path + "/**", rev)
    found = {path}
    for f in walk.files:
        found.add(f.path)
        parent = f.path.rsplit("/", 1)[0]
        while parent and parent != path and parent not in found:
            found.add(parent)
            parent = parent.rsplit("/", 1)[0]
    for p in sorted(found, key=lambda p: [c for c in p.split("/") if c]):
        ctx.line(p)


@command("touch", "PATH", "rewrite a file with its own body (creates it if missing)",
         "Sets the file to its current body so that its rev increases; a missing file\n"
         "is created empty. Exits 1 if the file changed in between.")
async def _touch(ctx: Context, path: str) -> None:
    try:
        f = await ctx.client.get_raw(path)
    except NoEnt:
        await ctx.client.set(path, b"", 0)
    else:
        await ctx.client.set(path, f.value, f.rev)


@command("wait", "GLOB", "print the next change matching GLOB",
         "Waits for the first change to a file matching GLOB with rev >= -r (default:\n"
         "the next change from now) and prints it as:\n"
         "  PATH REV set|del LEN\\nBODY\\n\n"
         "-t DURATION bounds the wait (then exit 2).")
async def _wait(ctx: Context, glob: str) -> None:
    event = await ctx.client.wait(glob, ctx.options.rev, ctx.options.timeout)
    ctx.write(format_event(event))


@command("watch", "GLOB", "print every change matching GLOB until interrupted",
         "Prints each change to a file matching GLOB, from -r REV (default: from now),\n"
         "as 'PATH REV set|del LEN', the body and a line feed, until Ctrl-C.\n"
         "Reconnects to another address of the URI when a node fails.")
async def _watch(ctx: Context, glob: str) -> None:
    watch = ctx.client.watch(glob, ctx.options.rev)
    if ctx.reactor is not None:
        ctx.reactor.addSystemEventTrigger("before", "shutdown", watch.close)
    async for event in watch:
        ctx.write(format_event(event))


@command("self", "", "print the node's id", "Prints the id of the node that answers.")
async def _self(ctx: Context) -> None:
    ctx.line((await ctx.client.self_info()).id)


@command("leave", "", "make the node leave its CAL slot and stop voting",
         "Asks the node of -a (its first address only: never another) to empty its\n"
         "CAL slot and stop voting (DELETE /v1/self/slot), and prints the slot. The\n"
         "node goes on serving reads as a non-member and claims no slot again until it\n"
         "is restarted. Refused (NO_QUORUM, exit 2) when the members left would have\n"
         "no quorum; NOENT when the node holds no slot. Needs the read-write secret\n"
         "when the node has secrets. See docs/operations.md, \"Leaving\".")
async def _leave(ctx: Context) -> None:
    ctx.line((await ctx.client.leave())["slot"])


@command("nop", "", "run one consensus round",
         "Makes the cluster agree on a no-op (it takes a rev); prints nothing.")
async def _nop(ctx: Context) -> None:
    await ctx.client.nop()


@command("backup", "FILE", "save a backup of the store to FILE, print its rev",
         "Saves one consistent backup of the answering node's store at one rev (every\n"
         "file with its rev, and the history window; see docs/operations.md) and\n"
         "prints that rev. The backup's checksum is verified before FILE is written,\n"
         "and FILE is replaced whole (a temporary file renamed) or not at all; it is\n"
         "readable by its owner only. Needs the read-write secret when the node has\n"
         "secrets (sk= in the URI).")
async def _backup(ctx: Context, path: str) -> None:
    from doozer.store.backup import BackupError, decode

    data = await ctx.client.backup()
    try:
        contents = decode(data)
    except BackupError as error:
        raise CommandError(
            f"the backup from {ctx.client.current} is unusable, nothing saved: {error}"
        ) from None
    try:
        write_atomically(path, data)  # temp file, fsync, rename, fsync dir; mode 0600
    except OSError as error:
        raise CommandError(f"cannot save the backup to {path}: {error.strerror or error}") from None
    ctx.line(contents.rev)


@command("restore", "FILE", "make a data dir for a new cluster from the backup FILE (offline)",
         "doozer restore FILE --data-dir DIR [--cluster NAME]\n"
         "Checks the backup FILE and writes into DIR, which must be empty or new, the\n"
         "state of a new one-member cluster (a new cluster id and node id) holding the\n"
         "backup's files at their revs; its next rev is above the backup's, and reads\n"
         "or watches from before the backup's rev answer TOO_LATE. Start it with\n"
         "'twistd doozer --data-dir DIR', then join other nodes with --peers. NAME is\n"
         "the new cluster's name (default: the backup's). Needs no node: -a is not\n"
         "used. See docs/operations.md, \"Restore\".",
         offline=True, flags=("data-dir", "cluster"))
async def _restore(ctx: Context, path: str) -> None:
    from doozer.node.restore import RestoreError, restore

    directory = ctx.options.flags.get("data-dir")
    if not directory:
        raise UsageError("usage: doozer restore FILE --data-dir DIR [--cluster NAME]")
    try:
        made = restore(path, directory, ctx.options.flags.get("cluster"))
    except RestoreError as error:
        raise CommandError(str(error)) from None
    ctx.line(f"restored {made.files} files at rev {made.backup_rev} into {made.directory}: "
             f"a new cluster {made.cluster!r} (id {made.cluster_id}), its one member "
             f"{made.node_id}; the next rev is above {made.rev}")
    ctx.line(f"start it:  twistd doozer --data-dir {made.directory} --cluster {made.cluster} "
             "--listen HOST:PORT ...")
    ctx.line("then add nodes:  twistd doozer --data-dir NEW-EMPTY-DIR --peers HOST:PORT ...")


@command("help", "[COMMAND]", "print this help, or a command's",
         "Without COMMAND lists the commands; with one, documents it.", offline=True)
async def _help(ctx: Context, name: str = "") -> None:
    ctx.write(help_text(name).encode("utf-8"))


def help_text(name: str = "") -> str:
    """The general usage text, or one command's help.

    :raises UsageError: for an unknown command name.
    """
    if not name:
        width = max(len(f"{c.name} {' '.join(c.args)}") for c in COMMANDS.values())
        lines = [
            f"  {(c.name + ' ' + ' '.join(c.args)).ljust(width)}  {c.summary}"
            for c in COMMANDS.values()
        ]
        return USAGE.format(commands="\n".join(lines))
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise UsageError(f"unknown command {name!r}; see 'doozer help'")
    lease = "[-l ID] " if cmd.name in ("set", "add") else ""
    head = f"usage: doozer [-a URI] [-r REV] [-t DURATION] {lease}{cmd.name} {' '.join(cmd.args)}"
    return f"{head.rstrip()}\n\n{cmd.summary}.\n\n{cmd.doc}\n"
