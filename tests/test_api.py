"""Package boundaries: the dependency direction holds and the install mapping is ours."""

from __future__ import annotations

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
