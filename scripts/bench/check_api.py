"""Check API throughput: the real `POST /v1/anomaly/check` next to a bare aiohttp handler.

Each server runs in its own process pinned to CPU 0; wrk (Debian's `wrk`) runs pinned to
CPU 1 with 50 connections. Rows, all from the same run, by substrate:
- `bare`: an aiohttp POST handler that reads the body and returns constant JSON, on an
  `Application` (the ceiling of the ">= 0.8 x bare" target);
- `bare+noop-middleware`: the same behind one pass-through middleware (what aiohttp's
  middleware machinery costs by itself);
- `bare+project-middleware`: the same behind the project's guard as one middleware
  (request ID and log context, auth, errors to HTTP);
- `project-app`: the project's routes and handlers on an `Application` with that one
  middleware: what the API would cost on aiohttp's plain stack;
- `bare-lowlevel`: the constant handler alone on aiohttp's low-level server (`web.Server`,
  no `Application`, no router), which the project's API runs on;
- `bare+project-dispatch`: the same handler routed and guarded as the project's routes
  are (`services.http.Router`), the HTTP layer before any check work;
- `project`: the project's API with its baseline cache (the steady state);
- `project-nocache`: the same API with `api.cache_ttl_s = 0`, one HGETALL per request;
- `project-batch100`: `POST /v1/anomaly/check:batch` with 100 traces per request.
- with `--uvloop` (needs `pip install uvloop`, not a project dependency): `bare-uvloop`
  and `project-uvloop`, the bare handler (on an `Application`, as `bare`) and the project
  both on uvloop's event loop, so their ratio has the same loop on both sides.
Besides the ratios to `bare`, the script prints each project row against the bare
handler on its own substrate (`project-app` x `bare`, `project` x `bare-lowlevel`).
Every row but `project-nocache` and `project-batch100` is measured `--rounds` times in
alternation; the table shows the best round of each, and also the median over rounds of
each round's ratio to the bare handler of the same round (neighbours in time: a load
that comes and goes touches both or neither). Besides wrk's figures each row has the
server's CPU time per request (from /proc): on a shared machine it is the steadier of
the two; `others %` is the share of the server's or wrk's CPU that other processes took
during that row's best round.

    .venv/bin/python -m scripts.bench.check_api [--smoke] [--json out.json]
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from pipeline.buckets import BucketRef, bucket_of
from pipeline.keys import Keys
from pipeline.stats import Baseline
from scripts.bench import common
from services.redis_client import connect

CONNECTIONS = 50
SERVER_CPU = "0"
LOAD_CPU = "1"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_body(service: str, endpoint: str, start_ns: int, duration_ms: float) -> dict[str, Any]:
    return {"traceId": "0af7651916cd43dd8448eb211c80319c", "rootServiceName": service,
            "rootTraceName": endpoint, "startTimeUnixNano": str(start_ns),
            "durationMs": duration_ms}


async def seed(url: str, prefix: str, start_ns: int) -> None:
    """One learned baseline (n=1000) for the bucket the requests fall in."""
    keys = Keys(prefix)
    ref = BucketRef("checkout", "POST /api/pay", bucket_of(start_ns, ZoneInfo("Asia/Taipei")))
    redis = connect(url)
    try:
        base = Baseline(120.0, 310.0, 25.0, 1000, int(time.time() * 1000))
        await redis.hset(keys.base(ref.id), mapping=base.to_hash())  # type: ignore[arg-type]
    finally:
        await redis.aclose()


def wrk_script(path: Path, endpoint: str, body: bytes) -> Path:
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.path = {_lua_str(endpoint)}\n"
        f"wrk.body = {_lua_str(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    path.write_text(lua)
    return path


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def run_wrk(port: int, script: Path, seconds: int, server_pid: int | None = None
            ) -> dict[str, float]:
    """wrk's figures, plus, when `server_pid` is given, the server's CPU time per request
    (on a shared, noisy machine it moves far less than requests per second) and the
    share of the server's or wrk's CPU, whichever is larger, that other processes took
    meanwhile (a round with a large share was disturbed)."""
    cmd = [*common.taskset(LOAD_CPU), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
           "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, started = busy_seconds(), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    figures = parse_wrk(out)
    if server_pid:
        server_s = cpu_seconds(server_pid) - server_before
        figures["server_cpu_us_per_req"] = round(server_s * 1e6 / max(1.0, figures["requests"]), 1)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_s = (wrk_after.ru_utime + wrk_after.ru_stime
                 - wrk_before.ru_utime - wrk_before.ru_stime)
        elapsed_s = time.monotonic() - started
        busy_after = busy_seconds()
        pinned = bool(common.taskset(SERVER_CPU))  # else the CPUs are not ours to count
        others = [(busy_after[cpu] - busy_before[cpu] - own) / elapsed_s
                  for cpu, own in ((SERVER_CPU, server_s), (LOAD_CPU, wrk_s)) if pinned]
        figures["others_cpu_share"] = round(max([0.0, *others]), 2)
    return figures


def busy_seconds() -> dict[str, float]:
    """Each CPU's time spent on anything but idling, by CPU number, from /proc/stat."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, ticks[:8])
            busy[name[3:]] = ((user + nice + system + irq + softirq + steal)
                              / os.sysconf("SC_CLK_TCK"))
    return busy


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    figures = {"req_per_s": float(rps.group(1))}
    total = re.search(r"(\d+) requests in", out)
    figures["requests"] = float(total.group(1)) if total else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m:
            figures[f"p{pct}_ms"] = round(float(m.group(1)) * _UNITS_MS[m.group(2)], 3)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def measure(kind: str, args: list[str], script: Path, seconds: int) -> dict[str, float]:
    port = free_port()
    server = common.spawn("check_servers", [kind, "--port", str(port), *args], cpus=SERVER_CPU)
    try:
        wait_port(port)
        run_wrk(port, script, 1)  # warm up: connections, caches, the first HGETALL
        return run_wrk(port, script, seconds, server.pid)
    finally:
        server.terminate()
        server.wait(10)


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda f: f["req_per_s"])


def round_ratios(runs: dict[str, list[dict[str, float]]], name: str, ref: str
                 ) -> tuple[float, float]:
    """The medians over rounds of `name`'s req/s and CPU ratios to `ref` in the same round."""
    pairs = list(zip(runs[name], runs[ref]))
    by_rps = statistics.median(f["req_per_s"] / r["req_per_s"] for f, r in pairs)
    by_cpu = statistics.median(r["server_cpu_us_per_req"] / f["server_cpu_us_per_req"]
                               for f, r in pairs)
    return round(by_rps, 3), round(by_cpu, 3)


def reference(name: str) -> str:
    return "bare-uvloop" if name.endswith("-uvloop") else "bare"


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--seconds", type=int, default=5, help="wrk duration per measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating bare/project rounds")
    p.add_argument("--uvloop", action="store_true",
                   help="also bare and project on uvloop (pip install uvloop)")
    a = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if a.uvloop and importlib.util.find_spec("uvloop") is None:
        raise SystemExit("--uvloop needs uvloop: .venv/bin/pip install uvloop")
    seconds, rounds = (1, 1) if a.smoke else (a.seconds, a.rounds)
    prefix = a.prefix or common.unique_prefix("check")
    start_ns = time.time_ns()
    asyncio.run(seed(a.redis_url, prefix, start_ns))
    project = ["--redis-url", a.redis_url, "--prefix", prefix]
    one = orjson.dumps(check_body("checkout", "POST /api/pay", start_ns, 150.0))
    batch = orjson.dumps({"traces": [check_body("checkout", "POST /api/pay", start_ns, 150.0 + i)
                                     for i in range(100)]})
    rows: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            single = wrk_script(Path(tmp) / "one.lua", "/v1/anomaly/check", one)
            many = wrk_script(Path(tmp) / "batch.lua", "/v1/anomaly/check:batch", batch)
            kinds = {"bare": ("bare", []), "bare+noop-middleware": ("bare-noop", []),
                     "bare+project-middleware": ("bare-app-mw", []),
                     "project-app": ("project-app", project),
                     "bare-lowlevel": ("bare-lowlevel", []),
                     "bare+project-dispatch": ("bare-mw", []),
                     "project": ("project", project)}
            if a.uvloop:
                kinds["bare-uvloop"] = ("bare", ["--uvloop"])
                kinds["project-uvloop"] = ("project", [*project, "--uvloop"])
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
            for _ in range(rounds):
                for name, (kind, args) in kinds.items():
                    runs[name].append(measure(kind, args, single, seconds))
            for name, measured in runs.items():
                rows[name] = best(measured)
                rows[name]["round_ratio"], rows[name]["round_cpu_ratio"] = round_ratios(
                    runs, name, reference(name))
            rows["project-nocache"] = measure(
                "project", [*project, "--cache-ttl-s", "0"], single, seconds)
            rows["project-batch100"] = measure("project", project, many, seconds)
            rows["project-batch100"]["checks_per_s"] = rows["project-batch100"]["req_per_s"] * 100
    finally:
        asyncio.run(_cleanup(a.redis_url, prefix))
    report(rows, runs, a.json, seconds)


async def _cleanup(url: str, prefix: str) -> None:
    redis = connect(url)
    try:
        await common.delete_prefix(redis, prefix)
    finally:
        await redis.aclose()


def report(rows: dict[str, dict[str, float]], runs: dict[str, list[dict[str, float]]],
           json_path: str | None, seconds: int) -> None:
    bare_rps = rows["bare"]["req_per_s"]
    bare_cpu = rows["bare"]["server_cpu_us_per_req"]
    out = []
    for name, f in rows.items():
        ref = rows[reference(name)]
        out.append([name, f["req_per_s"], f.get("checks_per_s", f["req_per_s"]),
                    f.get("p50_ms", 0.0), f.get("p99_ms", 0.0),
                    common.ratio(f["req_per_s"], ref["req_per_s"]), f["server_cpu_us_per_req"],
                    common.ratio(ref["server_cpu_us_per_req"], f["server_cpu_us_per_req"]),
                    f.get("round_ratio", "-"), f.get("round_cpu_ratio", "-"),
                    round(100 * f.get("others_cpu_share", 0.0)), int(f["non_2xx"])])
    print(common.table(
        f"check API, wrk -t1 -c{CONNECTIONS} -d{seconds}s, server on CPU {SERVER_CPU}, "
        f"wrk on CPU {LOAD_CPU} (best of the alternating rounds, and the median of each "
        "round's ratio; *-uvloop rows x bare-uvloop)",
        ["server", "req/s", "checks/s", "p50 ms", "p99 ms", "x bare", "cpu us/req",
         "x bare (cpu)", "median x bare", "median (cpu)", "others %", "non-2xx"], out))
    figures = {**{k: v for k, v in rows.items()},
               "ratio_project_vs_bare": common.ratio(rows["project"]["req_per_s"], bare_rps),
               "cpu_ratio_project_vs_bare": common.ratio(
                   bare_cpu, rows["project"]["server_cpu_us_per_req"])}
    # Each project row against the bare handler on the same substrate: its own work alone.
    for name, bare_name, key in (("project-app", "bare", "project_app_vs_bare"),
                                 ("project", "bare-lowlevel", "project_vs_bare_lowlevel")):
        project_row, bare_row = rows[name], rows[bare_name]
        figures[f"ratio_{key}"] = common.ratio(project_row["req_per_s"], bare_row["req_per_s"])
        figures[f"cpu_ratio_{key}"] = common.ratio(
            bare_row["server_cpu_us_per_req"], project_row["server_cpu_us_per_req"])
        medians = round_ratios(runs, name, bare_name)
        figures[f"round_ratio_{key}"], figures[f"round_cpu_ratio_{key}"] = medians
        print(f"{name} x {bare_name} (the same substrate): {figures[f'ratio_{key}']:.3f} "
              f"by req/s, {figures[f'cpu_ratio_{key}']:.3f} by CPU (best rounds); "
              f"medians of the rounds' ratios {medians[0]:.3f} / {medians[1]:.3f}")
    if "bare-uvloop" in rows:  # the same event loop on both sides
        uv_bare, uv_project = rows["bare-uvloop"], rows["project-uvloop"]
        figures["ratio_project_vs_bare_uvloop"] = common.ratio(
            uv_project["req_per_s"], uv_bare["req_per_s"])
        figures["cpu_ratio_project_vs_bare_uvloop"] = common.ratio(
            uv_bare["server_cpu_us_per_req"], uv_project["server_cpu_us_per_req"])
    common.write_json(json_path, "check_api", figures,
                      {"connections": CONNECTIONS, "seconds": seconds})


if __name__ == "__main__":
    main()
