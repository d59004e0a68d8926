"""Scores of one run against the scenario's labels: per-trace precision and recall by kind,
incidents found, false incidents (and on which normal pattern), detection delay."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.eval.drive import RunResult, flagged_mask
from scripts.eval.traffic import (
    ANOMALOUS,
    DAY_MS,
    INCIDENT,
    KIND_NAMES,
    MIN_MS,
    Chunk,
    Incident,
    Scenario,
)

# A detected incident matches a labelled one on its endpoint when it starts between
# this long before the labelled start and the labelled end.
MATCH_BEFORE_MS = 5 * MIN_MS


@dataclass(slots=True)
class TraceScores:
    flagged: int = 0
    true_flagged: int = 0
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (flagged, total)

    @property
    def precision(self) -> float:
        return self.true_flagged / self.flagged if self.flagged else 1.0

    def recall(self, kinds: tuple[str, ...]) -> float:
        got = sum(self.by_kind.get(k, (0, 0))[0] for k in kinds)
        total = sum(self.by_kind.get(k, (0, 0))[1] for k in kinds)
        return got / total if total else float("nan")


def score_traces(chunks: list[Chunk], flagged: set[int]) -> TraceScores:
    s = TraceScores()
    counts = np.zeros((len(KIND_NAMES), 2), dtype=np.int64)
    for c in chunks:
        if not c.scored or not c.ids.size:
            continue
        hit = flagged_mask(c.ids, flagged)
        np.add.at(counts[:, 0], c.kind[hit], 1)
        np.add.at(counts[:, 1], c.kind, 1)
    for k, name in enumerate(KIND_NAMES):
        s.by_kind[name] = (int(counts[k, 0]), int(counts[k, 1]))
    s.flagged = int(counts[:, 0].sum())
    s.true_flagged = int(sum(counts[k, 0] for k in ANOMALOUS))
    return s


def incident_coverage(chunks: list[Chunk], sc: Scenario, run: RunResult) -> float:
    """Share of the labelled incidents' requests that fall inside an incident the product
    reported on their endpoint (open ones run to the end of the traffic)."""
    spans: dict[int, list[tuple[int, int]]] = {}
    names = [(e.service, e.endpoint) for e in sc.endpoints]
    for e in run.incidents.values():
        ep = names.index((e["service"], e["endpoint"]))
        end = int(e["ended_ms"]) if "ended_ms" in e else 2**62
        spans.setdefault(ep, []).append((int(e["started_ms"]), end))
    inside = total = 0
    for c in chunks:
        mine = c.scored & (c.kind == INCIDENT) if c.scored else None
        if mine is None or not mine.any():
            continue
        for ep, t in zip(c.endpoint[mine].tolist(), c.start_ms[mine].tolist()):
            total += 1
            inside += any(a <= t < b for a, b in spans.get(ep, ()))
    return inside / total if total else float("nan")


@dataclass(slots=True)
class IncidentScores:
    labelled: list[dict[str, Any]] = field(default_factory=list)  # one per labelled incident
    false: list[dict[str, Any]] = field(default_factory=list)  # detected, matching nothing
    deploy: dict[str, Any] | None = None

    def found(self, min_factor: float = 0.0) -> tuple[int, int]:
        rows = [r for r in self.labelled if r["factor"] >= min_factor]
        return sum(1 for r in rows if r["found"]), len(rows)

    def median_delay_min(self, min_factor: float = 0.0) -> float:
        delays = [r["delay_min"] for r in self.labelled
                  if r["found"] and r["factor"] >= min_factor]
        return statistics.median(delays) if delays else float("nan")


def score_incidents(sc: Scenario, run: RunResult) -> IncidentScores:
    detected = [(iid, e) for iid, e in run.incidents.items()]
    used: set[str] = set()
    out = IncidentScores()
    for inc in sc.incidents:
        out.labelled.append(_match(sc, inc, detected, run, used))
    if sc.deploy is not None:
        out.deploy = _match(sc, sc.deploy, detected, run, used)
    for iid, e in detected:
        if iid not in used:
            out.false.append({"id": iid, "service": e["service"], "endpoint": e["endpoint"],
                              "started_ms": int(e["started_ms"]),
                              "pattern": _pattern(sc, e), "reason": e["reason"]})
    return out


def _match(sc: Scenario, inc: Incident, detected: list[tuple[str, dict[str, str]]],
           run: RunResult, used: set[str]) -> dict[str, Any]:
    ep = sc.endpoints[inc.endpoint]
    row: dict[str, Any] = {"endpoint": f"{ep.service} {ep.endpoint}", "factor": inc.factor,
                           "start_ms": inc.start_ms, "minutes": (inc.end_ms - inc.start_ms) // MIN_MS,
                           "found": False, "delay_min": None, "kind": inc.kind}
    for iid, e in sorted(detected, key=lambda d: int(d[1]["started_ms"])):
        started = int(e["started_ms"])
        same = (e["service"], e["endpoint"]) == (ep.service, ep.endpoint)
        if same and iid not in used and inc.start_ms - MATCH_BEFORE_MS <= started < inc.end_ms:
            used.add(iid)
            row.update(found=True, delay_min=(run.opened_at[iid] - inc.start_ms) / MIN_MS,
                       detected_start_ms=started, detected_end_ms=e.get("ended_ms"))
            break
    return row


def _pattern(sc: Scenario, e: dict[str, str]) -> str:
    """Which normal pattern a false incident fell on."""
    started = int(e["started_ms"])
    day = next((d for d in range(len(sc.days))
                if sc.day_start_ms(d) <= started < sc.day_start_ms(d) + DAY_MS), None)
    if day is None:
        return "other"
    if day == sc.holiday_day:
        return "holiday"
    d = sc.deploy
    if d is not None and started >= d.start_ms and \
            (e["service"], e["endpoint"]) == (sc.endpoints[d.endpoint].service,
                                              sc.endpoints[d.endpoint].endpoint):
        return "after the deploy step"
    hour = (started - sc.day_start_ms(day)) // 3_600_000
    ep = next((x for x in sc.endpoints if (x.service, x.endpoint) == (e["service"], e["endpoint"])),
              None)
    if ep is not None and ep.batch_hours and ep.batch_hours[0] - 1 <= hour <= ep.batch_hours[1]:
        return "batch window"
    if sc.days[day].weekday() >= 5:
        return "weekend"
    return "diurnal/other"


