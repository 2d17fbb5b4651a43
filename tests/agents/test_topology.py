"""Topology generators: sizes, symmetry, connectivity, determinism; the peers-file loader."""

from __future__ import annotations

import pytest

from swarmgp.agents.topology import (
    TOPOLOGIES,
    TopologyError,
    complete,
    components,
    diameter,
    geometric,
    grid,
    is_connected,
    load_peers,
    make_topology,
    ring,
    smallworld,
    tree,
)


def _check_simple(adj: dict[int, tuple[int, ...]], n: int) -> None:
    assert sorted(adj) == list(range(n))
    for a, nb in adj.items():
        assert a not in nb
        assert list(nb) == sorted(set(nb))
        for b in nb:
            assert a in adj[b]


@pytest.mark.parametrize("name", TOPOLOGIES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 64, 301])
def test_every_topology_connected_with_right_size(name: str, n: int) -> None:
    adj = make_topology(name, n, seed=3)
    _check_simple(adj, n)
    assert is_connected(adj)


def test_shapes() -> None:
    assert sum(len(v) for v in tree(31).values()) == 2 * 30
    assert all(len(v) == 2 for v in ring(10).values())
    assert diameter(ring(10)) == 5
    g = grid(12, cols=4)
    assert len(g[5]) == 4 and len(g[0]) == 2 and diameter(g) == 5
    assert all(len(v) == 9 for v in complete(10).values())
    assert diameter(tree(15)) == 6


def test_random_topologies_deterministic_and_seed_dependent() -> None:
    assert geometric(200, rng=5) == geometric(200, rng=5)
    assert geometric(200, rng=5) != geometric(200, rng=6)
    assert smallworld(200, rng=5) == smallworld(200, rng=5)
    assert smallworld(200, 4, 0.3, rng=5) != smallworld(200, 4, 0.3, rng=6)


def test_geometric_small_range_is_made_connected_both_ways() -> None:
    for mode in ("grow", "bridge"):
        adj = geometric(150, radius=0.02, rng=1, mode=mode)
        assert is_connected(adj)
    # bridging keeps the range: far fewer links than growing it
    grown = sum(map(len, geometric(150, radius=0.02, rng=1, mode="grow").values()))
    bridged = sum(map(len, geometric(150, radius=0.02, rng=1, mode="bridge").values()))
    assert bridged < grown


def test_smallworld_degree_and_rewiring() -> None:
    lattice = smallworld(100, k=6, p=0.0, rng=0)
    assert all(len(v) == 6 for v in lattice.values())
    rewired = smallworld(100, k=6, p=0.5, rng=0)
    assert sum(map(len, rewired.values())) >= 2 * 300 - 2 * 10
    assert diameter(rewired) < diameter(lattice)


def test_components_of_subgraph() -> None:
    adj = ring(6)
    assert components(adj, alive=[0, 1, 3, 4]) == [[0, 1], [3, 4]]


def test_load_peers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "peers.txt"
    p.write_text("# a path\n0: 1\n1: 2, 3\n2 3\n")
    adj = load_peers(p)
    assert adj == {0: (1,), 1: (0, 2, 3), 2: (1, 3), 3: (1, 2)}
    bad = tmp_path / "bad.txt"
    bad.write_text("0: x\n")
    with pytest.raises(TopologyError):
        load_peers(bad)
    gap = tmp_path / "gap.txt"
    gap.write_text("0: 2\n")
    with pytest.raises(TopologyError):
        load_peers(gap)
    with pytest.raises(TopologyError):
        load_peers(tmp_path / "missing.txt")
    with pytest.raises(TopologyError):
        make_topology("hypercube", 4)
