"""Ingest throughput: the project's ingest next to a hand-written grouped-Lua ceiling.

N events (default 200k, ~2% duplicate trace IDs, 300 endpoints) are XADDed by a producer
process while the consumers run, spread over one hour (live traffic: ~300 buckets) and over
a week (a backfill: 14,400 buckets); events/s is end to end, from the first XADD to the last
ack (polled with XINFO GROUPS every 5 ms). `backlog` rows drain a pre-filled stream
instead (ingest alone, from consumer start to last ack). Each row also checks that the
samples stored equal the distinct trace IDs (dedup worked, nothing lost).
The two implementations alternate `--rounds` times; the best of each counts.

    .venv/bin/python -m scripts.bench.ingest [--events 200000] [--smoke] [--json out.json]
"""

from __future__ import annotations

import subprocess
import time
from typing import Any, cast

import redis as redis_sync

from pipeline import samples
from pipeline.keys import INGEST_GROUP
from scripts.bench import common
from scripts.bench.ingest_workers import unique_traces

POLL_S = 0.005
TIMEOUT_S = 600.0


def run_case(url: str, kind: str, events: int, consumers: int = 1, backlog: bool = False,
             seed: int = 1, profile_to: str | None = None, batch_size: int | None = None,
             spread: str = "hour") -> dict[str, Any]:
    """One measurement: `consumers` processes of `kind` ("project" | "ceiling")."""
    prefix = common.unique_prefix(f"ingest-{kind}")
    r = redis_sync.Redis.from_url(url)
    stream = f"{prefix}traces"
    r.xgroup_create(stream, INGEST_GROUP, id="0", mkstream=True)
    procs: list[subprocess.Popen[bytes]] = []
    args = ["--redis-url", url, "--prefix", prefix, "--events", str(events), "--seed", str(seed),
            "--spread", spread]
    try:
        if backlog:
            _produce(args)
        for i in range(consumers):
            extra = ["--batch-size", str(batch_size)] if batch_size and kind == "project" else []
            procs.append(common.spawn("ingest_workers", [kind, *args, "--consumer", f"c{i}", *extra],
                                      profile_to=profile_to if i == 0 else None))
        _wait_ready(r, prefix, consumers, procs)
        stats_before = _command_stats(r)
        started = time.time()
        r.set(f"{prefix}bench:go", 1)
        if not backlog:
            time.sleep(0.2)  # the consumers' first XREADGROUP is on its way
            producer = common.spawn("ingest_workers", ["produce", *args])
        finished = _wait_done(r, stream, events, procs)
        if not backlog:
            producer.wait(30)
            started = float(r.get(f"{prefix}bench:produced") or started)
        redis_usec = _redis_usec(stats_before, _command_stats(r))
        stored = sum(_stored(r, k) for k in r.scan_iter(match=f"{prefix}dur:*", count=1000))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        _delete(r, prefix)
        r.close()
    seconds = finished - started
    return {"kind": kind, "consumers": consumers, "mode": "backlog" if backlog else "producer",
            "spread": spread, "batch_size": batch_size,
            "events": events, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds, 1), "samples_stored": stored,
            "redis_cpu_us_per_event": {c: round(us / events, 2) for c, us in redis_usec.items()}}


def _command_stats(r: redis_sync.Redis) -> dict[str, int]:
    """Server time spent per command so far (the whole server: others' load shows too)."""
    return {name: int(v["usec"]) for name, v in r.info("commandstats").items()}


def _redis_usec(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k.removeprefix("cmdstat_"): v - before.get(k, 0) for k, v in after.items()}
    top = sorted(((v, k) for k, v in delta.items() if v > 0), reverse=True)[:6]
    return {k: v for v, k in top}


def _produce(args: list[str]) -> None:
    producer = common.spawn("ingest_workers", ["produce", *args])
    if producer.wait(TIMEOUT_S) != 0:
        raise RuntimeError("producer failed")


def _stored(r: redis_sync.Redis, key: bytes) -> int:
    """Samples in one bucket: the project's ring (pipeline/samples.py), the ceiling's LIST."""
    if r.type(key) == b"list":
        return int(r.llen(key))
    return int(samples.decode(cast(bytes | None, r.get(key))).size)


def _wait_ready(r: redis_sync.Redis, prefix: str, n: int,
                procs: list[subprocess.Popen[bytes]]) -> None:
    """Until every consumer process is connected and about to read (it says so in a set)."""
    deadline = time.monotonic() + 60
    while r.scard(f"{prefix}bench:ready") < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("consumers did not start")
        time.sleep(0.02)


def _wait_done(r: redis_sync.Redis, stream: str, events: int,
               procs: list[subprocess.Popen[bytes]]) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for g in r.xinfo_groups(stream):
            if g["name"] == INGEST_GROUP.encode() and (g["entries-read"] or 0) >= events \
                    and g["pending"] == 0:
                return time.time()
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a consumer exited early")
        time.sleep(POLL_S)
    raise RuntimeError("ingest did not finish in time")


def _delete(r: redis_sync.Redis, prefix: str) -> None:
    batch = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(batch), 1000):
        r.unlink(*batch[i : i + 1000])


def best_of(url: str, kinds: list[str], events: int, rounds: int, **kw: Any) -> dict[str, Any]:
    """Alternate the kinds `rounds` times; keep each kind's fastest run."""
    best: dict[str, Any] = {}
    for _ in range(rounds):
        for kind in kinds:
            row = run_case(url, kind, events, **kw)
            if kind not in best or row["events_per_s"] > best[kind]["events_per_s"]:
                best[kind] = row
    return best


def profile(url: str, events: int, out_dir: str, spread: str) -> None:
    import pstats
    from pathlib import Path

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for kind in ("ceiling", "project"):
        path = str(Path(out_dir) / f"{kind}.prof")
        row = run_case(url, kind, events, backlog=True, profile_to=path, spread=spread)
        print(f"\n== {kind}: {row['events_per_s']:,.0f} events/s under cProfile; "
              f"Redis CPU us/event by command: {row['redis_cpu_us_per_event']}")
        pstats.Stats(path).sort_stats("tottime").print_stats(18)


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--spreads", default="hour,week",
                   help="which start-time spreads to measure: hour (~300 buckets), week "
                        "(14,400 buckets); default both")
    p.add_argument("--no-backlog", action="store_true", help="skip the drain-only rows")
    p.add_argument("--batch-sizes", default="",
                   help="also drain the backlog with the project at these TLA_INGEST_BATCH_SIZE "
                        "values, e.g. 250,500,1000,2000 (first spread)")
    p.add_argument("--profile", metavar="DIR",
                   help="instead: drain a backlog once per kind with the consumer under "
                        "cProfile; print the top functions and Redis time per command "
                        "(first spread)")
    a = p.parse_args()
    spreads = [s for s in a.spreads.split(",") if s]
    if a.profile:
        profile(a.redis_url, a.events if not a.smoke else 5_000, a.profile, spreads[0])
        return
    events, rounds = (5_000, 1) if a.smoke else (a.events, a.rounds)
    modes = [False] if a.no_backlog or a.smoke else [False, True]
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    for spread in spreads:
        expected = unique_traces(events, 1, spread)
        for backlog in modes:
            mode = "backlog" if backlog else "producer"
            best = best_of(a.redis_url, ["ceiling", "project"], events, rounds,
                           backlog=backlog, spread=spread)
            ratio = common.ratio(best["project"]["events_per_s"], best["ceiling"]["events_per_s"])
            figures[f"{spread}_{mode}"] = {**best, "ratio_project_vs_ceiling": ratio,
                                           "distinct_traces": expected}
            rows += [{**r, "ratio": common.ratio(r["events_per_s"],
                                                 best["ceiling"]["events_per_s"]),
                      "ok": r["samples_stored"] == expected} for r in best.values()]
    if a.batch_sizes:
        expected = unique_traces(events, 1, spreads[0])
        for n in (int(x) for x in a.batch_sizes.split(",")):
            r = run_case(a.redis_url, "project", events, backlog=True, batch_size=n,
                         spread=spreads[0])
            figures.setdefault("project_backlog_by_batch_size", {})[n] = r
            rows.append({**r, "kind": f"project batch={n}", "ratio": "-",
                         "ok": r["samples_stored"] == expected})
    print(common.table(
        f"ingest: {events:,} events (~2% duplicates, 300 endpoints), best of {rounds}",
        ["implementation", "spread", "mode", "seconds", "events/s", "x ceiling", "samples ok"],
        [[r["kind"], r["spread"], r["mode"], r["seconds"], r["events_per_s"], r["ratio"],
          "yes" if r["ok"] else f"no ({r['samples_stored']:,})"] for r in rows]))
    common.write_json(a.json, "ingest", figures, {"events": events, "rounds": rounds,
                                                  "spreads": spreads})


if __name__ == "__main__":
    main()
