"""The Dockerfile, checked without a Docker engine: every COPY source exists in the build
context (and survives .dockerignore), the final stage is lean and non-root, and the image
installs the locked dependencies and the built wheel (tests/ops/test_wheel.py runs that
install for real)."""

from __future__ import annotations

import fnmatch

from tests.ops.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "python3-dev", "libc6-dev")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def ignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()]
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for rule in rules:
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if any(_match(p, pattern) for p in prefixes):
            verdict = not negate
    return verdict


def _match(path: str, pattern: str) -> bool:
    if pattern == "**":
        return True
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase("/".join(path.split("/")[i:]), tail)
                   for i in range(len(path.split("/"))))
    return fnmatch.fnmatchcase(path, pattern)


def copy_sources() -> list[str]:
    sources = []
    for word, args in instructions():
        if word in ("COPY", "ADD") and "--from=" not in args:
            tokens = [t for t in args.split() if not t.startswith("--")]
            sources += tokens[:-1]
    return sources


def test_every_copy_source_exists_and_is_not_ignored() -> None:
    sources = copy_sources()
    assert {"requirements/run.lock", "pyproject.toml", "README.md", "pipeline/", "services/",
            "schemas/"} <= set(sources)
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the build context"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not ignored(str(f.relative_to(ROOT)))]
        assert kept, f"COPY {source}: everything is excluded by .dockerignore"


def test_dockerignore_keeps_code_and_drops_the_rest() -> None:
    assert not ignored("pipeline/ingest/ingest.lua") and not ignored("services/api.py")
    assert not ignored("schemas/openapi.yaml") and not ignored("pyproject.toml")
    assert not ignored("requirements/run.lock") and not ignored("README.md")
    for junk in (".git/config", ".venv/bin/python", "tests/conftest.py", ".tla-state/redis.url",
                 "services/__pycache__/api.cpython-311.pyc", "compose/compose.yaml"):
        assert ignored(junk), junk


def test_multi_stage_slim_non_root_with_healthcheck() -> None:
    build, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert final[0][1].startswith("python:3.11-slim")
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the final stage must not run as root"
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    entry = [args for word, args in final if word == "ENTRYPOINT"]
    assert entry == ['["tempo-anomaly"]']
    final_runs = " ".join(args for word, args in final if word == "RUN")
    assert not any(tool in final_runs.split() for tool in BUILD_TOOLS)
    assert any(word == "COPY" and "--from=" in args for word, args in final)
    assert build[0][1].startswith("python:3.11")


def test_the_image_installs_the_lock_and_the_wheel_only() -> None:
    """Dependencies from the lock with hashes checked, the product as a wheel; the final
    stage has no source tree and no PYTHONPATH shim."""
    build, final = stages()[0], stages()[-1]
    runs = [args for word, args in build if word == "RUN"]
    assert any("--require-hashes -r requirements/run.lock" in r for r in runs)
    assert any("pip wheel --no-deps --no-build-isolation" in r and "pip install --no-deps" in r
               for r in runs)
    assert not any("PYTHONPATH" in args for word, args in final if word == "ENV")
    assert all("--from=build" in args for word, args in final if word == "COPY")
