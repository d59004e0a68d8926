"""Ingest scaling: the project's ingest with 1 and 2 consumer processes (and the ceiling's).

Same workload and measurement as scripts/bench/ingest.py (producer running, first XADD to
last ack). On a 2-core machine Redis, the producer and the consumers share the CPUs, so
the second consumer shows how much of the gap is consumer-side Python (it scales) and how
much is Redis-side script time (it does not).

    .venv/bin/python -m scripts.bench.scaling [--events 200000] [--smoke] [--json out.json]
"""

from __future__ import annotations

from typing import Any

from scripts.bench import common
from scripts.bench.ingest import run_case
from scripts.bench.ingest_workers import unique_traces


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    events, rounds = (5_000, 1) if a.smoke else (a.events, a.rounds)
    kinds = ["project"] if a.smoke else ["project", "ceiling"]
    expected = unique_traces(events, 1)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for kind in kinds:
            for consumers in (1, 2):
                row = run_case(a.redis_url, kind, events, consumers=consumers)
                name = f"{kind}-x{consumers}"
                if name not in best or row["events_per_s"] > best[name]["events_per_s"]:
                    best[name] = row
    figures: dict[str, Any] = {"runs": best}
    for kind in kinds:
        figures[f"{kind}_speedup_2_vs_1"] = common.ratio(
            best[f"{kind}-x2"]["events_per_s"], best[f"{kind}-x1"]["events_per_s"])
    print(common.table(
        f"ingest scaling: {events:,} events with the producer running, best of {rounds}",
        ["implementation", "consumers", "seconds", "events/s", "x 1 consumer", "samples ok"],
        [[r["kind"], r["consumers"], r["seconds"], r["events_per_s"],
          common.ratio(r["events_per_s"], best[f"{r['kind']}-x1"]["events_per_s"]),
          "yes" if r["samples_stored"] == expected else f"no ({r['samples_stored']:,})"]
         for r in best.values()]))
    common.write_json(a.json, "scaling", figures, {"events": events, "rounds": rounds})


if __name__ == "__main__":
    main()
