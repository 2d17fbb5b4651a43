"""Package boundaries: the dependency direction holds and the install mapping is ours."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("swarmgp.fusion", ("torch", "zmq", "gpytorch", "msgpack")),
        ("swarmgp.protocol", ("torch", "gpytorch")),
    ],
)
def test_dependency_direction(module, forbidden):
    code = (
        f"import sys, {module}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_packages_resolve_inside_this_repository():
    import swarmgp.agents
    import swarmgp.fusion
    import swarmgp.protocol
    import swarmgp.sim

    for mod in (swarmgp.agents, swarmgp.fusion, swarmgp.protocol, swarmgp.sim):
        assert Path(mod.__file__).resolve().is_relative_to(ROOT)


def test_fusion_all_is_sorted_and_importable():
    import swarmgp.fusion as f

    assert list(f.__all__) == sorted(f.__all__)
    for name in f.__all__:
        assert hasattr(f, name)


# ----------------------------------------------------------------------------- layering

PACKAGES = {
    "fusion": ROOT / "fusion",
    "protocol": ROOT / "protocol",
    "agents": ROOT / "agents",
    "sim": ROOT / "sim",
}
#: What each layer may import from the project (DESIGN.md section 3): nothing upward.
LAYER = {"fusion": 0, "protocol": 1, "agents": 2, "sim": 3}
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def _imports(path: Path) -> set[str]:
    return {a or b for a, b in IMPORT.findall(path.read_text())}


def _modules(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_relative_imports() -> None:
    # one import style: absolute swarmgp.* imports everywhere
    bad = [
        str(p.relative_to(ROOT))
        for folder in PACKAGES.values()
        for p in _modules(folder)
        if re.search(r"^\s*from\s+\.", p.read_text(), re.M)
    ]
    assert not bad, f"relative imports in {bad}"


def test_nothing_imports_upward() -> None:
    bad = []
    for name, folder in PACKAGES.items():
        for p in _modules(folder):
            for mod in _imports(p):
                parts = mod.split(".")
                if parts[0] == "swarmgp" and len(parts) > 1 and parts[1] in LAYER:
                    if LAYER[parts[1]] > LAYER[name]:
                        bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_agent_core_never_imports_runtime_sim_or_zmq() -> None:
    core = [p for p in (ROOT / "agents").glob("*.py")]
    sources = _modules(ROOT / "agents" / "sources")
    bad = []
    for p in core + sources:
        for mod in _imports(p):
            if mod.startswith(("swarmgp.agents.runtime", "swarmgp.sim", "zmq")):
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    for p in sources:  # the intake edge does not reach into the agent core either
        for mod in _imports(p):
            if mod.startswith("swarmgp.agents.") and not mod.startswith(
                ("swarmgp.agents.sources", "swarmgp.agents.run_config")
            ):
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_fusion_imports_only_numpy_and_scipy() -> None:
    allowed = {"numpy", "scipy", "swarmgp", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for p in _modules(ROOT / "fusion"):
        for mod in _imports(p):
            top = mod.split(".")[0]
            if top not in allowed and top not in stdlib:
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
            if mod.startswith("swarmgp.") and not mod.startswith("swarmgp.fusion"):
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


@pytest.mark.parametrize(
    "package",
    [
        "swarmgp.fusion",
        "swarmgp.protocol",
        "swarmgp.agents",
        "swarmgp.agents.sources",
        "swarmgp.agents.runtime",
        "swarmgp.sim",
    ],
)
def test_every_public_package_has_a_sorted_all(package: str) -> None:
    import importlib

    mod = importlib.import_module(package)
    names = list(mod.__all__)
    assert names == sorted(names), f"{package}.__all__ is not sorted"
    for name in names:
        assert hasattr(mod, name), f"{package}.__all__ names missing {name}"


def test_importing_the_agent_core_stays_light() -> None:
    code = (
        "import sys, swarmgp.agents, swarmgp.fusion; "
        "heavy = ('torch', 'gpytorch', 'scipy.stats', 'zmq'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"importing the core loads {out.stdout.strip()}"


_AGENT_PROCESS_PROBE = """
import sys
sys.path.insert(0, {root!r})
import launch
import swarmgp.agents.runtime.node as node

def built(agent, transport, **kw):  # stands in for the run loop: the agent is built, not yet fed
    heavy = ('torch', 'gpytorch', 'scipy.stats', 'scipy.optimize', 'pandas', 'matplotlib')
    print('HEAVY=' + ','.join(m for m in heavy if m in sys.modules))
    return 0

node.run = built
sys.exit(launch.main({argv!r}))
"""


@pytest.mark.parametrize("learn", ["--learn", "--no-learn"])
@pytest.mark.parametrize("mode", ["paper", "collective"])
def test_an_agent_process_starts_without_heavy_imports(mode: str, learn: str) -> None:
    """``launch.py agent`` imports no torch/scipy.stats up to its first batch (issue 12)."""
    argv = ["agent", "--id", "0", "--agents", "2", "--mode", mode, learn, "--log-level", "ERROR"]
    code = _AGENT_PROCESS_PROBE.format(root=str(ROOT), argv=argv)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY=")]
    assert line == ["HEAVY="], f"an agent process loads {line} before learning\n{out.stderr}"
