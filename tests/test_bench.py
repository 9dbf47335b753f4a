"""``passivepaxos bench``: the counting proxy, the workloads' request counts, the report
(targets, ratios, cost, markdown, plots) and the CLI contract. Figures are not asserted
against targets here (BRIEF section 7: reported by the benchmark, never a timed test); what
is asserted is that the counting is exact where the protocol fixes the count."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.bench import report
from passivepaxos.bench.proxy import FaultProxy, request_kind
from passivepaxos.bench.runner import BenchConfig, run
from passivepaxos.bench.workloads import Result
from passivepaxos.cli import main


def test_request_kind_follows_the_billing_classes() -> None:
    assert request_kind("POST", "/#DynamoDB_20120810.GetItem") == "read"
    assert request_kind("POST", "/#DynamoDB_20120810.DeleteItem") == "write"  # billed so
    assert request_kind("POST", "/#DynamoDB_20120810.PutItem") == "write"
    assert request_kind("PUT", "/b/log/00000001") == "write"
    assert request_kind("POST", "/upload/storage/v1/b/b/o?uploadType=multipart") == "write"
    assert request_kind("GET", "/b/log/00000001") == "read"
    assert request_kind("HEAD", "/b/x") == "read"
    assert request_kind("GET", "/b?list-type=2&prefix=snapshot%2F") == "list"
    assert request_kind("GET", "/storage/v1/b/bkt/o?prefix=log") == "list"
    assert request_kind("GET", "/storage/v1/b/bkt/o/log%2F1?alt=media") == "read"
    assert request_kind("DELETE", "/b/x") == "delete"


def test_proxy_counts_every_request_and_adds_the_round_trip(moto_server: Any) -> None:
    c0 = moto_server.client()
    c0.create_bucket(Bucket="proxy-count")
    with FaultProxy(moto_server.url, delay=0.05) as proxy:
        c = moto_server.client(endpoint_url=proxy.url)
        proxy.reset()
        c.put_object(Bucket="proxy-count", Key="a", Body=b"1")
        t = time.perf_counter()
        assert c.get_object(Bucket="proxy-count", Key="a")["Body"].read() == b"1"
        took = time.perf_counter() - t
        c.list_objects_v2(Bucket="proxy-count", Prefix="a")
        c.delete_object(Bucket="proxy-count", Key="a")
        assert proxy.counts() == {"write": 1, "read": 1, "list": 1, "delete": 1}
        assert 0.05 <= took < 0.5  # the delay, and no Nagle stall on top (it was +40 ms)


def _by_case(results: list[Result], store: str) -> dict[str, Result]:
    return {r.case: r for r in results if r.store == store and r.system == "passivepaxos"}


def test_quick_run_on_memory_and_file_counts_exactly(tmp_path: Path) -> None:
    cfg = BenchConfig.quick(stores=("memory", "file"), rtt=0.002, appenders=(1, 2), peers=False)
    steps: list[str] = []
    out = run(cfg, lambda label, done, total: steps.append(label))
    assert steps[-1] == "done" and len(steps) > 10
    for store in ("memory", "file"):
        cases = _by_case(out.results, store)
        holder = cases["append (lease holder)"]
        assert holder.ops == cfg.n and len(holder.latencies) == cfg.n
        assert dict(holder.requests) == {"write": cfg.n}  # one create per entry, no read
        bulk = cases[f"bulk append ({cfg.per_slot}/slot)"]
        assert bulk.entries == cfg.catchup and bulk.requests["write"] == bulk.ops
        read = cases[f"catch-up read ({cfg.per_slot}/slot)"]
        assert read.entries == cfg.catchup and read.requests["read"] >= read.ops
        assert cases["kv get (lease read)"].requests_per_op < 1  # served from the lease
        assert cases["failover (ttl 0.3 s)"].wall >= 0.3  # never before the ttl ran out
        # issue 12: a new Log per append, exactly: manifest + hint, then LIST + the hinted
        # slot and the one before it (memory) or those + 6 probes (file: a listing reads
        # the whole directory), create
        fresh0 = cases["append (fresh process, hint 0 behind)"]
        fresh64 = cases["append (fresh process, hint 64 behind)"]  # + tail and its predecessor
        if store == "memory":
            want = {"read": 4 * fresh0.ops, "list": fresh0.ops, "write": fresh0.ops}
            assert dict(fresh0.requests) == want
            assert fresh64.requests["read"] == 6 * fresh64.ops
            assert fresh64.requests["list"] == fresh64.ops
        else:
            assert dict(fresh0.requests) == {"read": 11 * fresh0.ops, "write": fresh0.ops}
        assert fresh64.requests["write"] - fresh64.hint_writes == fresh64.ops
        warm = cases["append (warm start, tail cache)"]
        assert dict(warm.requests) == {"read": warm.ops, "write": warm.ops}  # manifest, create
        low = cases["append (lease holder, one per 5 s)"]
        assert dict(low.requests) == {"write": low.ops}  # no hint on a timer (< 32 slots)
        # a lease holder on a 3-store quorum leads each slot after its own: one accept per
        # store, the DECIDED markers read beside them (M2) and a manifest check per store
        # (MemberStore), one round trip (was 9 writes + 9 reads in 3: prepare, accept and
        # marker write); 1 on a single one
        q3 = cases[f"append (lease holder, 3-store quorum: {store},{store},{store})"]
        assert dict(q3.requests) == {"write": 3 * q3.ops, "read": 6 * q3.ops}
        # the claimant's requests after the holder's last write: a read and a LIST (memory;
        # file:// probes a round instead) see that record, ten polls a tenth of a ttl apart,
        # one create (exact counts with a stepped clock: tests/test_polling_costs.py)
        failover = cases["failover (ttl 0.3 s)"]
        assert failover.requests["write"] == 1
        assert 10 <= sum(failover.requests.values()) <= (15 if store == "memory" else 25)
    file_cases = _by_case(out.results, "file")
    two = file_cases["contended append, 2 processes"]
    assert two.ops == len(two.latencies) > 0 and "acks per process" in two.note
    # every ack by second, but the one append each process had in flight at the stop
    assert two.acks is not None and sum(two.acks) == two.ops
    assert two.timeline is not None and two.ops - 2 <= sum(two.timeline) <= two.ops
    assert f"; {two.ops - sum(two.timeline)} acked after the end" in two.note
    assert not any(r.case.startswith("contended") for r in out.results if r.store == "memory")
    assert out.skipped == [
        {"case": "contended append (memory)", "reason": "memory:// lives in one process"}
    ]
    names = {t["target"] for t in report.targets(out)}
    assert "requests per entry, lease holder" in names
    assert "fresh process, one append, hint 0 behind" in names
    assert "warm start (tail cache), one append" in names
    assert "client CPU throughput, memory, batching" in names
    assert "lease holder on a 3-store quorum, requests per slot" in names
    assert "failover after the holder dies: the claimant's requests, time" in names
    assert "16 processes without a lease vs one, sustained (file)" not in names  # (1, 2) only
    md = report.markdown(out, img="img")
    assert "### Targets" in md and "![cpu](img/cpu.png)" in md
    pngs = report.plots(out, tmp_path)
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quick_run_on_s3_side_by_side_with_the_peers(moto_server: Any) -> None:
    pytest.importorskip("deltalake")
    pytest.importorskip("slatedb")
    cfg = BenchConfig.quick(
        stores=("s3",), rtt=0.0, n=10, peer_n=3, appenders=(1,), catchup=500, seconds=0.5
    )
    out = run(cfg, moto=moto_server)
    cases = _by_case(out.results, "s3")
    # counted by the proxy, at the HTTP level: still exactly one PUT per entry
    assert dict(cases["append (lease holder)"].requests) == {"write": 10}
    systems = {r.system for r in out.results}
    assert {"passivepaxos", "deltalake", "slatedb"} <= systems
    ratios = {(x["peer"], x["ours"]): x for x in report.ratios(out)}
    delta = ratios[("deltalake: append, 1 row/commit", "append (lease holder)")]
    assert delta["requests_per_op"][1] == 1.0 and delta["requests_per_op"][0] > 1.0
    assert delta["requests_ratio"] == round(delta["requests_per_op"][0] / 1.0, 2)
    costs = {(c["system"], c["case"]): c for c in report.costs(out)}
    holder_cost = costs[("passivepaxos", "append (lease holder)")]
    assert holder_cost["s3"] == pytest.approx(5.0)  # 1 PUT/op at $0.005 per 1000
    assert out.round_trips["s3"] > 0
    # the CLI process beside a one-put_object script, counted by the proxy
    # (40 slots, the hint at slot 32: manifest, hint, LIST, GET hinted slot and the one
    # before it, the tail and the
    # slot before it, create)
    cli = cases["CLI append (new process)"]
    assert cli.ops == 2 and dict(cli.requests) == {"read": 12, "list": 2, "write": 2}
    plain = next(r for r in out.results if r.case == "one put_object script (new process)")
    assert dict(plain.requests) == {"write": 2} and plain.system == "boto3"
    # the locks peer on moto's DynamoDB: GetItem, conditional PutItem, conditional
    # DeleteItem per acquire+release; ours: an acquire and a release entry, and one read
    if "dynamodb-lock" in systems:
        ddb = ratios[("dynamodb-lock: lock acquire+release", "lock acquire+release")]
        assert ddb["requests_per_op"] == [3.0, 3.0]
        peer = next(r for r in out.results if r.system == "dynamodb-lock")
        assert dict(peer.requests) == {"read": 5, "write": 10}


def test_quick_run_on_azure(azurite_server: Any) -> None:
    """``bench --stores file,azure``: azurite behind the counting proxy, like s3 on moto."""
    cfg = BenchConfig.quick(
        stores=("file", "azure"),
        rtt=0.0,
        n=10,
        appenders=(1,),
        catchup=500,
        seconds=0.5,
        contend_seconds=0.5,
        peers=False,
    )
    out = run(cfg, azurite=azurite_server)
    cases = _by_case(out.results, "azure")
    # counted by the proxy, at the HTTP level: one Put Blob per entry
    assert dict(cases["append (lease holder)"].requests) == {"write": 10}
    assert out.round_trips["azure"] > 0
    costs = {(c["counted_on"], c["case"]): c for c in report.costs(out)}
    assert costs[("azure", "append (lease holder)")]["azure"] == pytest.approx(6.5)
    mixed = cases["append (lease holder, 3-store quorum: file,file,az)"]
    assert mixed.ops >= 2 and mixed.requests["write"] > 0


def test_cli_bench_json_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "performance.md").write_text("# Performance\n\nHand-written intro.\n")
    code = main(
        [
            "bench",
            "--quick",
            "--stores",
            "memory",
            "--no-peers",
            "--rtt-ms",
            "1",
            "--json",
            "--docs",
            str(docs),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert {
        "config",
        "machine",
        "results",
        "targets",
        "ratios",
        "cost_usd_per_million_ops",
        "round_trips_ms",
        "skipped",
        "seconds",
    } <= set(data)
    assert data["config"]["stores"] == ["memory"]
    r = next(x for x in data["results"] if x["case"] == "append (lease holder)")
    assert r["requests_per_op"] == 1.0 and r["p50_rtt"] > 0
    page = (docs / "performance.md").read_text()
    assert page.startswith("# Performance\n\nHand-written intro.")
    assert "bench:begin" in page and "### Targets" in page
    assert (docs / "img" / "bench" / "cpu.png").is_file()
    # a second run replaces the generated block instead of appending another
    assert (
        main(
            ["bench", "--quick", "--stores", "memory", "--no-peers", "--json", "--docs", str(docs)]
        )
        == 0
    )
    assert (docs / "performance.md").read_text().count("bench:begin") == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--stores", "memory,nope"], "'nope'"),
        (["--rtt-ms", "-1"], "--rtt"),
        (["--docs", "/nonexistent/dir"], "/nonexistent/dir"),
    ],
)
def test_cli_bench_bad_input(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["bench", "--quick", "--no-peers", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("passivepaxos: error:") and needle in err


def test_cli_bench_bad_appenders_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--appenders", "1,x"])
    assert exc.value.code == 2
    assert "1,x" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("missing", "args"),
    [
        ("moto", ["--stores", "memory,s3"]),
        ("matplotlib", ["--stores", "memory", "--docs", "."]),
    ],
)
def test_cli_bench_missing_extra_is_refused_up_front(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: str,
    args: list[str],
) -> None:
    """Without the bench extra: one line naming what to install, exit 2, before any work
    (not a traceback minutes into a run, as a fresh install once showed)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    started: list[str] = []
    monkeypatch.setattr(
        "passivepaxos.bench.workloads.Target.fresh", lambda self: started.append("x")
    )
    assert main(["bench", "--quick", "--no-peers", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("passivepaxos: error:") and missing in err
    assert "passivepaxos[bench]" in err and len(err.strip().splitlines()) == 1
    assert started == []
