"""pyproject.toml declares what the code imports, in ranges that hold the pinned requirements files, and the Makefile
installs the project editable for the studio and the tests without the bench-only packages."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Views that only the studio's pages call draw with plotly, which the library alone does not need.
STUDIO_VIEWS = {"classroom.py", "compare.py", "jobs_view.py", "store_view.py"}
# The tests import each other and bench/ scripts by module name.
LOCAL = {"retrikt", "pages", "app", "bench", *(p.stem for p in (ROOT / "tests").glob("*.py")),
         *(p.stem for p in (ROOT / "bench").glob("*.py"))}


def _declared(extra: str | None = None) -> dict[str, Requirement]:
    lines = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            spec = next(iter(req.specifier), None)
            if spec is not None and spec.operator == "==" and "*" not in spec.version:
                pins[canonicalize_name(req.name)] = spec.version
    return pins


@functools.cache
def _owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # scans every installed distribution: seconds


def _imported_distributions(paths: list[Path]) -> dict[str, set[str]]:
    """Distribution name -> files importing it, for every third-party import in `paths` (lazy ones included)."""
    owners = _owners()
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__" or top in LOCAL:
                    continue
                assert top in owners, f"{path.relative_to(ROOT)} imports {top}, which no installed distribution provides"
                for dist in owners[top]:
                    found.setdefault(canonicalize_name(dist), set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_library_declares_every_package_it_imports():
    library = [p for p in (ROOT / "retrikt").rglob("*.py")
               if not (p.parent.name == "studio" and p.name in STUDIO_VIEWS)]
    missing = {d: f for d, f in _imported_distributions(library).items() if d not in _declared()}
    assert not missing, f"imported by retrikt/ but not in [project] dependencies: {missing}"


def test_the_studio_extra_covers_the_app_and_its_views():
    studio = [ROOT / "app.py", *(ROOT / "pages").rglob("*.py"), *(ROOT / "retrikt" / "studio" / n for n in STUDIO_VIEWS)]
    allowed = {**_declared(), **_declared("studio")}
    missing = {d: f for d, f in _imported_distributions(studio).items() if d not in allowed}
    assert not missing, f"imported by the studio but in neither the core nor the studio extra: {missing}"


def test_the_tests_need_no_bench_only_package():
    bench_only = set(_declared("bench")) - set(_declared()) - set(_declared("studio")) - {"retrikt"}
    used = _imported_distributions(sorted((ROOT / "tests").glob("*.py")))
    assert not bench_only & set(used), {d: used[d] for d in bench_only & set(used)}
    allowed = {**_declared(), **_declared("studio"), **_declared("test")}
    assert not set(used) - set(allowed), f"imported by tests/ but not declared: {set(used) - set(allowed)}"


@pytest.mark.parametrize("pinned", ["requirements.txt", "requirements-test.txt", "requirements-bench.txt"])
def test_every_pin_falls_inside_the_declared_range(pinned):
    declared = {**_declared("bench"), **_declared("test"), **_declared("studio"), **_declared()}
    outside = {name: (version, str(declared[name].specifier)) for name, version in _pins(pinned).items()
               if name in declared and not declared[name].specifier.contains(version, prereleases=True)}
    assert not outside, f"{pinned} pins versions that pyproject.toml excludes: {outside}"


def test_the_model_packages_stay_out_of_the_declared_dependencies():
    # Their declared dependencies are for other tools: pip would pull them in if a range named the package.
    models = {canonicalize_name(Requirement(line.split("#")[0]).name)
              for line in (ROOT / "requirements-models.txt").read_text().splitlines() if line.split("#")[0].strip()}
    everything = set(_declared()).union(*(_declared(extra) for extra in PROJECT["optional-dependencies"]))
    assert models and not models & everything


def _make(tmp_path: Path, *args: str) -> str:
    """What make would run for `args` against a venv folder whose install stamps are newer than every file."""
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    for stamp in (".installed", ".installed-bench"):
        (venv / stamp).touch()
    done = subprocess.run(["make", "-n", f"VENV={venv}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_reinstalls_when_pyproject_changes_and_app_never_installs_bench(tmp_path):
    assert "pip install" not in _make(tmp_path, "install")
    install = _make(tmp_path, "-W", "pyproject.toml", "install")
    assert "-e '.[studio,test]'" in install and "--no-deps -r requirements-models.txt" in install
    for target in ("app", "test", "test-fast"):
        commands = _make(tmp_path, "-B", target)
        assert "-e '.[studio,test]'" in commands, target
        assert "requirements-bench" not in commands and "[bench]" not in commands, (target, commands)
    assert "-e '.[bench]'" in _make(tmp_path, "-W", "requirements-bench.txt", "install-bench")
