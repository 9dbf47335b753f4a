"""One JSON vocabulary across commands (issue 13), checked against docs/cli.md.

docs/cli.md documents each command's ``--json`` output in a table right after a line
``JSON fields of `passivepaxos <command>`:`` (columns: field, type, meaning). This test
parses those tables and runs the real CLI (``python -m passivepaxos``, one process per
call) on fresh logs, in each command's success case and, where it can refuse, its refusal
case, and checks every object printed:

- every key is documented for that command (``<name>_b64`` counts as ``<name>``; the keys
  of the error object, ``JSON fields of an error``, are allowed everywhere);
- every documented field not marked ``optional`` is printed (an error object, a failure
  outside the command's own refusals, prints only the error fields);
- the value has the documented type, and the shared names have the shared types:
  ``holder`` str|null, ``epoch``/``token``/``head`` int|null, ``mine`` bool, ``expires``
  an ISO 8601 string or null, ``error`` str, ``head`` null for an empty log;
- a refusal (non-zero exit) has ``error`` and never the holder's token under ``token``;
- nested rows (``a.b``, ``a[].b``) describe the keys of the object ``a`` / of each object
  of the list ``a``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import next_line

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"

HEADING = re.compile(r"^JSON fields of (?:`passivepaxos (?P<cmd>[^`]+)`|(?P<error>an error)):\s*$")
ROW = re.compile(r"^\|\s*`(?P<field>[^`]+)`\s*\|(?P<type>[^|]*)\|(?P<meaning>.*)\|\s*$")
ERROR = "error object"  # the key under which the error object's table is kept

# the names shared by every command, with the types every command must give them
SHARED: dict[str, set[str]] = {
    "holder": {"string", "null"},
    "epoch": {"int", "null"},
    "token": {"int", "null"},
    "expires": {"string", "null"},
    "mine": {"bool"},
    "head": {"int", "null"},
    "error": {"string", "null"},  # null: verify's, which always has it
}


@dataclass
class Field:
    types: set[str]
    optional: bool


@dataclass
class Schema:
    fields: dict[str, Field] = field(default_factory=dict)  # top-level
    nested: dict[str, dict[str, Field]] = field(default_factory=dict)  # parent -> fields


def _types(cell: str) -> tuple[set[str], bool]:
    text = cell.strip()
    optional = text.endswith(", optional")
    text = text.removesuffix(", optional")
    types = {t.strip() for t in text.split(" or ")}
    known = {"string", "int", "float", "bool", "null", "list", "object"}
    assert types <= known, f"unknown type in docs/cli.md: {cell!r}"
    return types, optional


def parse_schemas(text: str) -> dict[str, Schema]:
    """``{command: Schema}`` from docs/cli.md's tables (the error object under ``ERROR``)."""
    schemas: dict[str, Schema] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = HEADING.match(lines[i])
        i += 1
        if m is None:
            continue
        name = ERROR if m.group("error") else m.group("cmd")
        assert name not in schemas, f"two tables for {name}"
        schema = schemas[name] = Schema()
        while i < len(lines) and not lines[i].startswith("|"):
            assert not lines[i].strip(), f"text between the heading and the table of {name}"
            i += 1
        assert lines[i].replace(" ", "") == "|field|type|meaning|", lines[i]
        i += 2  # the header and the |---| line
        while i < len(lines) and lines[i].startswith("|"):
            row = ROW.match(lines[i])
            assert row is not None, f"bad row under {name}: {lines[i]!r}"
            types, optional = _types(row.group("type"))
            path = row.group("field")
            if "." in path:
                parent, child = path.split(".", 1)
                parent = parent.removesuffix("[]")
                assert parent in schema.fields, f"{path}: {parent} is not a field of {name}"
                schema.nested.setdefault(parent, {})[child] = Field(types, optional)
            else:
                schema.fields[path] = Field(types, optional)
            i += 1
        assert schema.fields, f"empty table for {name}"
    return schemas


SCHEMAS = parse_schemas(DOC.read_text(encoding="utf-8"))


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    assert isinstance(value, dict), value
    return "object"


def _accepts(types: set[str], value: Any) -> bool:
    t = _type_of(value)
    return t in types or (t == "int" and "float" in types)  # JSON has one number


def _check_fields(where: str, obj: dict[str, Any], fields: dict[str, Field]) -> None:
    for key, value in obj.items():
        name = key.removesuffix("_b64")
        assert name in fields, f"{where}: {key!r} is not documented in docs/cli.md"
        if key.endswith("_b64"):
            assert isinstance(value, str), f"{where}: {key} is not a string"
            base64.b64decode(value, validate=True)
            with pytest.raises(UnicodeDecodeError):  # only bytes that are not UTF-8
                base64.b64decode(value).decode("utf-8")
            continue
        assert _accepts(fields[name].types, value), (
            f"{where}: {key}={value!r} is not {' or '.join(sorted(fields[name].types))}"
        )
    for name, f in fields.items():
        if not f.optional:
            assert name in obj or f"{name}_b64" in obj, f"{where}: documented {name!r} missing"


def check(command: str, obj: dict[str, Any], *, refused: bool) -> None:
    """``obj`` (one line of ``passivepaxos <command> --json``) against the docs."""
    assert command in SCHEMAS, f"docs/cli.md has no JSON fields table for {command!r}"
    schema = SCHEMAS[command]
    where = f"passivepaxos {command}: {json.dumps(obj)[:300]}"
    if set(obj) == set(SCHEMAS[ERROR].fields):  # an error outside the command's own
        _check_fields(where, obj, SCHEMAS[ERROR].fields)
        assert refused, f"{where}: an error object with exit 0"
        return
    _check_fields(where, obj, schema.fields)
    for parent, fields in schema.nested.items():
        inner = obj.get(parent)
        for item in inner if isinstance(inner, list) else [inner] if inner is not None else []:
            assert isinstance(item, dict), f"{where}: {parent} holds {item!r}"
            _check_fields(f"{where} [{parent}]", item, fields)
    # the shared names (a command's table may not give them other types either)
    for name, types in SHARED.items():
        if name in schema.fields:
            assert schema.fields[name].types <= types, (
                f"docs/cli.md gives {command}'s {name} the type {schema.fields[name].types}"
            )
        if name in obj:
            assert _accepts(types, obj[name]), f"{where}: {name}={obj[name]!r}"
    if isinstance(obj.get("expires"), str):
        datetime.datetime.fromisoformat(obj["expires"])
    if refused:
        assert isinstance(obj.get("error"), str) and obj["error"], f"{where}: no error"
        if "holder_token" in obj or obj.get("mine") is False:
            # what we were refused is the holder's: its token is never under our `token`
            assert obj.get("token") is None, f"{where}: the holder's token under token"
    else:
        assert "error" not in obj or obj["error"] is None, f"{where}: error on success"


# -- running the CLI ------------------------------------------------------------------------


@dataclass
class Out:
    code: int
    objects: list[dict[str, Any]]
    stderr: str


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", **(extra or {})}
    env.pop("PASSIVEPAXOS_LOG", None)
    return env


def _parse_lines(text: str) -> list[dict[str, Any]]:
    objects = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        objects.append(obj)
    return objects


def cli(
    command: str,
    *args: str,
    code: int = 0,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> list[dict[str, Any]]:
    """Run ``passivepaxos <command> ARGS --json``, expect exit ``code``, check each object
    printed against the command's table, and return them."""
    p = subprocess.run(
        [sys.executable, "-m", "passivepaxos", *command.split(), *args, "--json"],
        cwd=ROOT,
        env=_env(env),
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    err = p.stderr.decode(errors="replace")
    assert p.returncode == code, f"{command} {args}: exit {p.returncode}, not {code}: {err}"
    objects = _parse_lines(p.stdout.decode("utf-8"))  # JSON output is always UTF-8
    if code != 0:
        assert objects, f"{command} {args}: a refusal printed no JSON object ({err})"
    for obj in objects:
        check(command, obj, refused=code != 0)
    return objects


def one(command: str, *args: str, **kw: Any) -> dict[str, Any]:
    objects = cli(command, *args, **kw)
    assert len(objects) == 1, objects
    return objects[0]


def spawn(command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # run as a background job (nohup, `&` in a script): a child would inherit the
        # ignored SIGINT and never see the Ctrl-C that stop() sends; a handled signal is
        # reset to the default across exec
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return subprocess.Popen(
        [sys.executable, "-m", "passivepaxos", *command.split(), *args, "--json"],
        cwd=ROOT,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def line_of(p: subprocess.Popen[str], command: str, timeout: float = 30.0) -> dict[str, Any]:
    obj = json.loads(next_line(p, timeout, command))
    check(command, obj, refused=False)
    return obj


def stop(p: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    for text in out.splitlines():
        assert not text.strip() or isinstance(json.loads(text), dict)
    return p.returncode, err


@pytest.fixture
def new_log(tmp_path: Path) -> Iterator[Any]:
    made = 0

    def make(*names: str) -> str:
        nonlocal made
        urls = []
        for n in names or ("log",):
            made += 1
            d = tmp_path / f"{n}{made}"
            d.mkdir()
            urls.append(f"file://{d}")
        url = ",".join(urls)
        one("init", url)
        return url

    yield make


# -- the commands ---------------------------------------------------------------------------


def test_the_tables_parse_and_use_the_shared_names() -> None:
    assert len(SCHEMAS) >= 30, sorted(SCHEMAS)
    assert SCHEMAS[ERROR].fields.keys() == {"error", "exit"}
    for command, schema in SCHEMAS.items():
        for name, types in SHARED.items():
            if name in schema.fields:
                assert schema.fields[name].types <= types, (command, name)


def test_backends_and_probe(tmp_path: Path) -> None:
    rows = cli("backends")
    assert {r["name"] for r in rows} >= {"memory", "local", "s3", "gcs", "dropbox", "azure"}
    got = one("backends --probe", f"file://{tmp_path}")
    assert got["create"] is True and got["detail"]["create"] == "enforced"
    one("backends --probe", f"file://{tmp_path}/no-such-dir", code=1)


def test_init_propose_append_log_status_verify(tmp_path: Path, new_log: Any) -> None:
    url = new_log("log")
    again = one("init", url)
    assert again["created"] is False and again["unreachable"] == []
    one("init", f"file://{tmp_path}/missing", code=1)
    # an empty log: head is null everywhere
    assert one("status", url)["head"] is None
    assert one("verify", url)["head"] is None
    assert one("writer status", url)["head"] is None
    got = cli("append", url, "a", "b", "-", stdin=b"c\n\xff\n")
    assert [o["slot"] for o in got] == [0, 0, 0, 0]
    assert got[3] == {"slot": 0, "index": 3, "value_b64": base64.b64encode(b"\xff").decode()}
    assert one("append", url, "--stdin-raw", stdin=b"\x00raw")["slot"] == 1
    entries = cli("log", url)
    assert [e.get("value") for e in entries] == ["a", "b", "c", None, "\x00raw"]
    status = one("status", url)
    assert status["head"] == 1 and status["holder"] is None and status["mine"] is False
    assert one("verify", url)["head"] == 1
    cli("append", f"file://{tmp_path}/nowhere", "x", code=1)
    q = new_log("a", "b", "c")
    decided = one("propose", q, "leader", "alice")
    assert (decided["value"], decided["won"]) == ("alice", True)
    lost = one("propose", q, "leader", "\udcff")  # the byte 0xFF
    assert lost["proposed_b64"] == "/w==" and lost["value"] == "alice" and not lost["won"]
    one("propose", q, "bad name", "x", code=2)
    assert [h["url"] for h in one("status", q)["health"]] == q.split(",")


def test_snapshot_and_trim(new_log: Any) -> None:
    url = new_log()
    cli("append", url, "a")
    cli("append", url, "b")
    one("trim", url, "--before", "1", code=1)  # no snapshot yet
    assert one("snapshot", url)["slot"] == 1
    assert one("trim", url, "--before", "1")["trimmed"] == 1
    assert one("verify", url)["trimmed"] is True
    one("snapshot", new_log(), code=2)  # an empty log


def test_writer_lease(new_log: Any) -> None:
    url = new_log()
    claim = one("writer claim", url, "--ttl", "30", "--owner", "ingest")
    assert (claim["granted"], claim["mine"], claim["holder"], claim["epoch"]) == (
        True,
        True,
        "ingest",
        1,
    )
    st = one("writer status", url)
    assert (st["holder"], st["epoch"]) == ("ingest", 1)
    assert one("status", url)["holder"] == "ingest"
    assert one("append", url, "x", "--owner", "ingest")["slot"] == 1
    refused = one("append", url, "y", code=1)
    assert "writer lease is held by ingest" in refused["error"]
    not_yet = one("writer claim", url, "--no-wait", code=1)
    assert (not_yet["granted"], not_yet["mine"], not_yet["holder"]) == (False, False, "ingest")
    renewed = one("writer renew", url, "--owner", "ingest")
    assert renewed["renewed"] is True and renewed["mine"] is True
    assert one("writer renew", url, "--owner", "ingest", "--ttl", "20")["renewed"] is True
    assert one("writer renew", url, "--owner", "other", code=1)["renewed"] is False
    assert one("writer release", url, "--owner", "other", code=1)["released"] is False
    assert one("writer release", url, "--owner", "ingest")["released"] is True
    after = one("status", url)
    assert after["holder"] is None and after["expires"] is None


def test_kv(new_log: Any) -> None:
    url = new_log()
    put = one("kv put", url, "color", "blue")
    assert (put["key"], put["value"], put["slot"]) == ("color", "blue", 0)
    assert one("kv put", url, "note", "-", stdin=b"\xfe")["value_b64"] == "/g=="
    assert one("kv get", url, "color")["value"] == "blue"
    absent = one("kv get", url, "nope", code=1)
    assert absent["value"] is None
    ok = one("kv cas", url, "color", "blue", "red")
    assert (ok["ok"], ok["expected"], ok["new"], ok["current"]) == (True, "blue", "red", "red")
    bad = one("kv cas", url, "color", "blue", "green", code=1)
    assert (bad["ok"], bad["current"], bad["new"]) == (False, "red", "green")
    created = one("kv cas", url, "shape", "--absent", "circle")
    assert created["expected"] is None and created["ok"] is True
    assert one("kv del", url, "shape")["deleted"] is True
    assert one("kv del", url, "shape")["deleted"] is False
    one("kv put", url, "\udcff", "v")  # a key that is not UTF-8
    listed = cli("kv list", url)
    assert {o.get("key", o.get("key_b64")) for o in listed} == {"color", "note", "/w=="}
    watch = spawn("kv watch", url, "col", "--from", "0")
    first = line_of(watch, "kv watch")
    assert (first["op"], first["key"], first["value"]) == ("put", "color", "blue")
    one("kv del", url, "color")
    seen = [line_of(watch, "kv watch") for _ in range(2)]
    assert seen[-1]["op"] == "del" and seen[-1]["value"] is None
    assert stop(watch)[0] == 130


def test_locks(new_log: Any) -> None:
    url = new_log()
    free = one("lock status", url, "db")
    assert (free["holder"], free["token"], free["expires"], free["mine"]) == (
        None,
        None,
        None,
        False,
    )
    got = one("lock acquire", url, "db", "--ttl", "30", "--owner", "job-a")
    assert (got["token"], got["mine"], got["holder"]) == (1, True, "job-a")
    refused = one("lock acquire", url, "db", code=1)
    assert refused["token"] is None and refused["holder_token"] == 1
    assert one("lock status", url, "db", "--owner", "job-a")["mine"] is True
    held = one("lock status", url, "db")
    assert (held["holder"], held["token"], held["mine"]) == ("job-a", 1, False)
    assert one("lock release", url, "db", "--owner", "job-b", code=1)["released"] is False
    assert one("lock release", url, "db", "--owner", "job-a")["released"] is True
    assert one("lock status", url, "db")["token"] == 1  # the last one granted


def test_election(new_log: Any) -> None:
    url = new_log()
    assert one("elect status", url, "sched")["holder"] is None
    observer = spawn("elect observe", url, "sched")
    assert line_of(observer, "elect observe")["holder"] is None
    leader = spawn("elect campaign", url, "sched", "--candidate", "n1", "--ttl", "10")
    led = line_of(leader, "elect campaign")
    assert (led["holder"], led["token"], led["mine"]) == ("n1", 1, True)
    assert line_of(observer, "elect observe")["holder"] == "n1"
    st = one("elect status", url, "sched")
    assert (st["holder"], st["token"], st["mine"]) == ("n1", 1, False)
    refused = one("elect campaign", url, "sched", "--candidate", "n2", "--wait", "0.5", code=1)
    assert refused["token"] is None and refused["holder_token"] == 1
    assert one("elect resign", url, "sched", "--candidate", "n2", code=1)["resigned"] is False
    code, err = stop(leader, signal.SIGTERM)
    assert code == 0, err
    assert line_of(observer, "elect observe")["holder"] is None
    assert stop(observer)[0] == 130
    assert one("elect status", url, "sched")["token"] == 1  # the last term
    n3 = spawn("elect campaign", url, "sched", "--candidate", "n3", "--ttl", "10")
    assert line_of(n3, "elect campaign")["token"] == 2
    assert one("elect resign", url, "sched", "--candidate", "n3")["resigned"] is True
    assert n3.wait(30) == 75  # its term was given up under it


def test_members(new_log: Any, tmp_path: Path) -> None:
    q = new_log("a", "b", "c")
    cli("append", q, "x")
    listed = one("members list", q)
    assert listed["stores"] == listed["origin"] == q.split(",") and listed["changes"] == []
    d = tmp_path / "d"
    d.mkdir()
    added = one("members add", q, f"file://{d}")
    assert added["op"] == "add" and added["to"][-1] == f"file://{d}"
    one("members add", q, f"file://{d}", code=2)  # already a member
    now = ",".join(added["to"])
    removed = one("members remove", now, q.split(",")[0])
    assert removed["resumed"] is False and removed["op"] == "remove"
    assert len(one("members list", q)["changes"]) == 2  # the old list still names the log


def test_bench_tiny() -> None:
    args = ["--stores", "memory", "--no-peers", "--n", "3", "--peer-n", "1", "--seconds"]
    args += ["0.2", "--contend-seconds", "0.5", "--appenders", "1", "--catchup", "20"]
    got = one("bench", *args, "--per-slot", "5", "--rtt-ms", "0")
    assert got["results"]


def test_on_s3(moto_server: Any) -> None:
    env: dict[str, str] = moto_server.env()
    moto_server.client().create_bucket(Bucket="json-schema")
    url = "s3://json-schema/log"
    assert one("init", url, env=env)["created"] is True
    assert one("status", url, env=env)["head"] is None
    assert one("verify", url, env=env)["head"] is None
    assert one("append", url, "a", env=env)["slot"] == 0
    assert one("lock acquire", url, "db", "--owner", "o1", env=env)["token"] == 1
    refused = one("lock acquire", url, "db", env=env, code=1)
    assert refused["token"] is None and refused["holder_token"] == 1
    assert one("kv cas", url, "k", "x", "y", env=env, code=1)["current"] is None
    assert one("writer status", url, env=env)["holder"] is None
    assert one("backends --probe", url, env=env)["create"] is True
    one("append", "s3://no-such-bucket-x/log", "a", env=env, code=1)


def test_epoch_of_a_never_claimed_log_is_the_same_in_status_and_writer_status(
    new_log: Any,
) -> None:
    url = new_log()
    assert one("writer status", url)["epoch"] == one("status", url)["epoch"]


def test_every_documented_command_is_run_here() -> None:
    """Every table of docs/cli.md is exercised by a test of this file (a static check, so
    that it holds under ``pytest -n``): its command is named in a ``one``, ``cli`` or
    ``spawn`` call."""
    source = Path(__file__).read_text(encoding="utf-8")
    run_here = set(re.findall(r'(?:one|cli|spawn)\(\s*"([a-z -]+)"', source))
    missing = sorted(set(SCHEMAS) - {ERROR} - run_here)
    assert not missing, f"documented but not run: {missing}"
