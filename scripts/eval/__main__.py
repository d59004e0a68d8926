"""`python -m scripts.eval`: the scored evaluation (EVALUATION.md).

Generates labelled traffic per seed, pushes it end to end through the product on a real
Redis (a private key prefix, deleted afterwards), and prints the seed rule alone next to
the full product: per-trace precision/recall by kind, incidents found, false incidents,
detection delay.

    python -m scripts.eval --seeds 1,2,3          # the full week, several seeds
    python -m scripts.eval --smoke --seeds 7      # CI: two days, three endpoints
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

from redis.asyncio import Redis

from pipeline.buckets import load_zone
from scripts.bench.common import DEFAULT_REDIS_URL, delete_prefix, unique_prefix
from scripts.eval.drive import RunResult, drive, product_env, seed_env
from scripts.eval.score import (
    IncidentScores,
    TraceScores,
    incident_coverage,
    score_incidents,
    score_traces,
)
from scripts.eval.traffic import Chunk, Scenario, scenario


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.eval", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    p.add_argument("--smoke", action="store_true", help="2 days (a Friday to warm up, a Monday scored), 3 endpoints (CI)")
    p.add_argument("--timezone", default="Asia/Taipei")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    return p


async def evaluate(redis: Redis, sc: Scenario) -> dict[str, Any]:
    """One seed: the seed rule alone and the full product, same traffic."""
    labels: list[Chunk] = []
    runs: dict[str, RunResult] = {}
    product, seed = product_env(sc), seed_env()
    for name, env in (("product", product), ("seed", seed)):
        if name == "seed" and env == product:
            runs["seed"] = runs["product"]  # same settings: the same run
            continue
        prefix = unique_prefix(f"eval-{name}")
        try:
            runs[name] = await drive(redis, prefix, sc, env, labels if not labels else None)
        finally:
            await delete_prefix(redis, prefix)
    traces = {n: score_traces(labels, r.flagged) for n, r in runs.items()}
    incidents = score_incidents(sc, runs["product"])
    return {"seed": sc.seed, "days": [d.isoformat() for d in sc.days],
            "holiday": sc.holiday.isoformat() if sc.holiday else None,
            "scored_traces": sum(int(c.ids.size) for c in labels if c.scored),
            "traces": runs["product"].traces,
            "seconds": {n: round(r.seconds, 1) for n, r in runs.items()},
            "env": {n: r.env for n, r in runs.items()},
            "per_trace": {n: _trace_figures(t) for n, t in traces.items()},
            "incidents": {**_incident_figures(incidents),
                          "incident_requests_covered": incident_coverage(labels, sc,
                                                                         runs["product"])}}


def _trace_figures(t: TraceScores) -> dict[str, Any]:
    return {"precision": t.precision, "flagged": t.flagged, "by_kind": t.by_kind,
            "recall_all": t.recall(("outlier", "new-endpoint outlier", "incident",
                                    "deploy step"))}


def _incident_figures(s: IncidentScores) -> dict[str, Any]:
    found, total = s.found()
    found2, total2 = s.found(2.0)
    return {"found": found, "labelled": total, "found_2x": found2, "labelled_2x": total2,
            "median_delay_min_2x": s.median_delay_min(2.0),
            "median_delay_min": s.median_delay_min(),
            "false": s.false, "rows": s.labelled, "deploy": s.deploy}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def table(result: dict[str, Any]) -> str:
    seed, product = result["per_trace"]["seed"], result["per_trace"]["product"]
    inc = result["incidents"]
    lines = [f"seed {result['seed']}: {result['scored_traces']} scored traces of "
             f"{result['traces']} ({', '.join(result['days'])}; holiday {result['holiday']})",
             f"  {'':34}{'seed rule':>12}{'product':>12}",
             f"  {'per-trace precision':34}{_pct(seed['precision']):>12}"
             f"{_pct(product['precision']):>12}"]
    for kind in product["by_kind"]:
        s_hit, total = seed["by_kind"][kind]
        p_hit, _ = product["by_kind"][kind]
        if not total:
            continue
        label = f"flagged: {kind} (of {total})"
        lines.append(f"  {label:34}{s_hit / total:>12.4f}{p_hit / total:>12.4f}")
    delay = inc["median_delay_min_2x"]
    false_by: dict[str, int] = {}
    for f in inc["false"]:
        false_by[f["pattern"]] = false_by.get(f["pattern"], 0) + 1
    lines += [
        f"  {'incident requests inside one':34}{'-':>12}"
        f"{_pct(inc['incident_requests_covered']):>12}",
        f"  {'incidents found (all)':34}{'-':>12}{inc['found']:>9}/{inc['labelled']:<2}",
        f"  {'incidents found (>= 2x)':34}{'-':>12}{inc['found_2x']:>9}/{inc['labelled_2x']:<2}",
        f"  {'median delay >= 2x (min)':34}{'-':>12}{_pct(delay):>12}",
        f"  {'false incidents':34}{'-':>12}{len(inc['false']):>12}"
        + (f"  {false_by}" if false_by else ""),
    ]
    for r in inc["rows"]:
        got = f"found, opened after {r['delay_min']:.0f} min" if r["found"] else "MISSED"
        lines.append(f"    {r['factor']:.2g}x {r['minutes']:>3} min {r['endpoint']:<22} {got}")
    if inc["deploy"] is not None:
        d = inc["deploy"]
        got = f"found, opened after {d['delay_min']:.0f} min" if d["found"] else "not found"
        lines.append(f"    deploy step {d['factor']:.2g}x on {d['endpoint']}: {got}")
    for f in inc["false"]:
        lines.append(f"    false ({f['pattern']}): {f['reason']}")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    zone = load_zone(args.timezone)
    redis = Redis.from_url(args.redis_url)
    results = []
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            result = await evaluate(redis, scenario(seed, zone, smoke=args.smoke))
            results.append(result)
            print(table(result), flush=True)
    finally:
        await redis.aclose()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"smoke": args.smoke, "results": results}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
