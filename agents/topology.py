"""Neighbour graphs for simulated swarms, as pure functions returning adjacency.

Every generator returns ``dict[int, tuple[int, ...]]``: agent ids ``0..n-1`` mapped to their
sorted neighbours, undirected (``b in adj[a]`` iff ``a in adj[b]``), no self loops. Every
generator is deterministic given its arguments (random ones take a seed or a
``numpy.random.Generator``), and the random ones are made connected deterministically:
the geometric graph grows its range, the small-world graph adds the shortest bridging links.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

from swarmgp.fusion.errors import SwarmGPError

__all__ = [
    "TOPOLOGIES",
    "Adjacency",
    "TopologyError",
    "complete",
    "components",
    "diameter",
    "from_edges",
    "geometric",
    "grid",
    "is_connected",
    "load_peers",
    "make_topology",
    "neighbour_graph",
    "ring",
    "smallworld",
    "tree",
]

Adjacency = dict[int, tuple[int, ...]]

#: Names accepted by :func:`make_topology` (and ``--topology``).
TOPOLOGIES = ("tree", "ring", "grid", "geometric", "smallworld", "complete")


class TopologyError(SwarmGPError):
    """A topology cannot be built from the given arguments, or a peers file is malformed."""


def _check_n(n: int) -> None:
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise TopologyError(f"topology: expected n >= 1 agents, got {n!r}")


def from_edges(n: int, edges: Iterable[tuple[int, int]]) -> Adjacency:
    """Adjacency of an undirected graph on ``0..n-1`` from an edge list.

    Parameters
    ----------
    n : int
        Number of nodes.
    edges : iterable of (int, int)
        Undirected edges; duplicates and self loops are ignored.

    Returns
    -------
    dict of int to tuple of int
    """
    _check_n(n)
    nb: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        a, b = int(a), int(b)
        if not (0 <= a < n and 0 <= b < n):
            raise TopologyError(f"topology: edge ({a}, {b}) outside 0..{n - 1}")
        if a != b:
            nb[a].add(b)
            nb[b].add(a)
    return {i: tuple(sorted(s)) for i, s in enumerate(nb)}


def tree(n: int, branching: int = 2) -> Adjacency:
    """Complete ``branching``-ary tree in heap order: i's parent is ``(i - 1) // branching``."""
    _check_n(n)
    if branching < 1:
        raise TopologyError(f"tree: expected branching >= 1, got {branching}")
    return from_edges(n, ((i, (i - 1) // branching) for i in range(1, n)))


def ring(n: int) -> Adjacency:
    """Cycle ``0 - 1 - ... - (n-1) - 0`` (a path for n = 2, one node for n = 1)."""
    _check_n(n)
    return from_edges(n, ((i, (i + 1) % n) for i in range(n)))


def grid(n: int, cols: int | None = None) -> Adjacency:
    """4-neighbour grid filled row by row; ``cols`` defaults to ``ceil(sqrt(n))``.

    The last row may be partial; it stays connected to the row above.
    """
    _check_n(n)
    c = int(cols) if cols is not None else max(1, math.ceil(math.sqrt(n)))
    if c < 1:
        raise TopologyError(f"grid: expected cols >= 1, got {cols}")
    edges = []
    for i in range(n):
        k = i % c
        if k + 1 < c and i + 1 < n:
            edges.append((i, i + 1))
        if i + c < n:
            edges.append((i, i + c))
    return from_edges(n, edges)


def complete(n: int) -> Adjacency:
    """Every pair connected."""
    _check_n(n)
    return {i: tuple(j for j in range(n) if j != i) for i in range(n)}


def components(
    adj: Mapping[int, Iterable[int]], alive: Iterable[int] | None = None
) -> list[list[int]]:
    """Connected components (sorted lists, ordered by smallest id), optionally of a subgraph.

    Parameters
    ----------
    adj : mapping of int to iterable of int
    alive : iterable of int, optional
        Restrict to the subgraph induced by these nodes.
    """
    nodes = set(adj) if alive is None else set(alive) & set(adj)
    seen: set[int] = set()
    out: list[list[int]] = []
    for s in sorted(nodes):
        if s in seen:
            continue
        comp = [s]
        seen.add(s)
        q = deque([s])
        while q:
            a = q.popleft()
            for b in adj[a]:
                if b in nodes and b not in seen:
                    seen.add(b)
                    comp.append(b)
                    q.append(b)
        out.append(sorted(comp))
    return out


def is_connected(adj: Mapping[int, Iterable[int]]) -> bool:
    """Whether the graph has exactly one component (the empty graph is not connected)."""
    return len(components(adj)) == 1


def _bfs_dist(adj: Mapping[int, Iterable[int]], s: int) -> dict[int, int]:
    dist = {s: 0}
    q = deque([s])
    while q:
        a = q.popleft()
        for b in adj[a]:
            if b not in dist:
                dist[b] = dist[a] + 1
                q.append(b)
    return dist


def diameter(adj: Mapping[int, Iterable[int]], exact_limit: int = 2000) -> int:
    """Hop diameter of a connected graph.

    Exact (BFS from every node) up to ``exact_limit`` nodes; above it, the double-sweep
    lower bound (exact on trees), which is what a timeout needs.
    """
    if not adj:
        return 0
    if len(adj) <= exact_limit:
        return max(max(_bfs_dist(adj, s).values()) for s in adj)
    d0 = _bfs_dist(adj, min(adj))
    far = max(d0, key=lambda k: (d0[k], -k))
    return max(_bfs_dist(adj, far).values())


def _connect_by_closest(pos: np.ndarray, nb: list[set[int]]) -> None:
    """Join components by the shortest link between them, until connected (deterministic)."""
    while True:
        adj = {i: tuple(s) for i, s in enumerate(nb)}
        comps = components(adj)
        if len(comps) == 1:
            return
        main = np.array(comps[0])
        rest = np.array([i for c in comps[1:] for i in c])
        d2 = ((pos[main, None, :] - pos[None, rest, :]) ** 2).sum(-1)  # [|main|, |rest|]
        k = int(np.argmin(d2))
        a, b = int(main[k // rest.size]), int(rest[k % rest.size])
        nb[a].add(b)
        nb[b].add(a)


def geometric(
    n: int,
    radius: float | None = None,
    rng: np.random.Generator | int = 0,
    *,
    dim: int = 2,
    mode: str = "grow",
    return_positions: bool = False,
) -> Adjacency | tuple[Adjacency, np.ndarray]:
    """Random geometric graph: uniform positions in the unit square, links within ``radius``.

    Connected deterministically: ``mode="grow"`` multiplies the range by 1.1 until the graph is
    connected; ``mode="bridge"`` keeps the range and adds the shortest link between components
    until connected.

    Parameters
    ----------
    n : int
    radius : float, optional
        Communication range; default ``sqrt(2 log(n) / (pi n))`` (about average degree
        ``2 log n``, the connectivity threshold times sqrt 2) for n > 1.
    rng : numpy.random.Generator or int
        Source of positions (a seed is turned into ``default_rng(seed)``).
    dim : int
        Dimension of the unit cube.
    mode : {"grow", "bridge"}
    return_positions : bool
        Also return the positions, shape (n, dim).

    Returns
    -------
    adjacency, or (adjacency, positions of shape (n, dim))
    """
    _check_n(n)
    if mode not in ("grow", "bridge"):
        raise TopologyError(f"geometric: unknown mode {mode!r}")
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pos = g.random((n, dim))  # [n, dim]
    r = (
        float(radius)
        if radius is not None
        else math.sqrt(2.0 * math.log(max(n, 2)) / (math.pi * max(n, 2)))
    )
    if r <= 0:
        raise TopologyError(f"geometric: expected radius > 0, got {radius}")
    # neighbour search by cells of side r keeps this O(n) in memory for 10^4+ nodes
    while True:
        nb = _within(pos, r)
        if mode == "bridge":
            _connect_by_closest(pos, nb)
            break
        if is_connected({i: tuple(s) for i, s in enumerate(nb)}):
            break
        r *= 1.1
    adj = {i: tuple(sorted(s)) for i, s in enumerate(nb)}
    return (adj, pos) if return_positions else adj


def _within(pos: np.ndarray, r: float) -> list[set[int]]:
    n, dim = pos.shape
    cell = np.floor(pos / r).astype(np.int64)  # [n, dim]
    buckets: dict[tuple[int, ...], list[int]] = {}
    for i in range(n):
        buckets.setdefault(tuple(cell[i]), []).append(i)
    nb: list[set[int]] = [set() for _ in range(n)]
    offsets = np.stack(np.meshgrid(*[[-1, 0, 1]] * dim, indexing="ij"), -1).reshape(-1, dim)
    r2 = r * r
    for key, members in buckets.items():
        cand: list[int] = []
        for off in offsets:
            cand.extend(buckets.get(tuple(int(k + o) for k, o in zip(key, off, strict=False)), ()))
        ci = np.array(cand)
        mi = np.array(members)
        d2 = ((pos[mi, None, :] - pos[None, ci, :]) ** 2).sum(-1)
        ii, jj = np.nonzero(d2 <= r2)
        for a, b in zip(mi[ii], ci[jj], strict=False):
            if a != b:
                nb[int(a)].add(int(b))
    return nb


def smallworld(n: int, k: int = 4, p: float = 0.1, rng: np.random.Generator | int = 0) -> Adjacency:
    """Watts-Strogatz small world: ring lattice with k nearest neighbours, each edge rewired
    with probability p; then made connected by linking consecutive components (deterministic).

    Parameters
    ----------
    n : int
    k : int
        Even number of lattice neighbours (clipped to n - 1).
    p : float
        Rewiring probability.
    rng : numpy.random.Generator or int
    """
    _check_n(n)
    if not 0.0 <= p <= 1.0:
        raise TopologyError(f"smallworld: expected 0 <= p <= 1, got {p}")
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if n <= 3:
        return complete(n)
    k = max(2, min(int(k) - int(k) % 2, (n - 1) - (n - 1) % 2))
    nb: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for j in range(1, k // 2 + 1):
            b = (i + j) % n
            nb[i].add(b)
            nb[b].add(i)
    for j in range(1, k // 2 + 1):
        for i in range(n):
            b = (i + j) % n
            if b in nb[i] and g.random() < p:
                for _ in range(64):  # rejection sampling of a new endpoint, bounded
                    c = int(g.integers(n))
                    if c != i and c not in nb[i]:
                        nb[i].discard(b)
                        nb[b].discard(i)
                        nb[i].add(c)
                        nb[c].add(i)
                        break
    comps = components({i: tuple(s) for i, s in enumerate(nb)})
    for c0, c1 in zip(comps, comps[1:], strict=False):
        a, b = c0[0], c1[0]
        nb[a].add(b)
        nb[b].add(a)
    return {i: tuple(sorted(s)) for i, s in enumerate(nb)}


def load_peers(path: str | os.PathLike[str]) -> Adjacency:
    """Read a peers file: one agent a line, ``id: n1 n2 ...`` (or ``id n1,n2``), or ``a b`` edges.

    Blank lines and ``#`` comments are skipped. Ids must be ``0..n-1`` once all are seen; the
    graph is made undirected.

    Raises
    ------
    TopologyError
        Unreadable file, a non-integer id, or ids not forming ``0..n-1``.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise TopologyError(f"peers file {os.fspath(path)!r}: cannot read: {exc}") from exc
    edges: list[tuple[int, int]] = []
    nodes: set[int] = set()
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, tail = line.partition(":")
        toks = (tail if sep else line).replace(",", " ").split()
        try:
            if sep:
                a = int(head)
                peers = [int(t) for t in toks]
            else:
                a, peers = int(toks[0]), [int(t) for t in toks[1:]]
        except (ValueError, IndexError):
            raise TopologyError(
                f"peers file {os.fspath(path)!r} line {lineno}: expected integer ids, got {raw!r}"
            ) from None
        nodes.add(a)
        for b in peers:
            nodes.add(b)
            edges.append((a, b))
    if not nodes or nodes != set(range(len(nodes))):
        raise TopologyError(f"peers file {os.fspath(path)!r}: ids must be 0..n-1")
    return from_edges(len(nodes), edges)


def make_topology(name: str, n: int, seed: int = 0, **kwargs: float) -> Adjacency:
    """Build a named topology (one of :data:`TOPOLOGIES`) for n agents.

    Parameters
    ----------
    name : str
    n : int
    seed : int
        Seed of the random ones (geometric, smallworld).
    **kwargs
        Passed to the generator (e.g. ``radius``, ``k``, ``p``, ``branching``).
    """
    if name == "tree":
        return tree(n, **kwargs)  # type: ignore[arg-type]
    if name == "ring":
        return ring(n)
    if name == "grid":
        return grid(n, **kwargs)  # type: ignore[arg-type]
    if name == "complete":
        return complete(n)
    if name == "geometric":
        adj = geometric(n, rng=np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]
        assert isinstance(adj, dict)
        return adj
    if name == "smallworld":
        return smallworld(n, rng=np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]
    raise TopologyError(f"unknown topology {name!r}; expected one of {', '.join(TOPOLOGIES)}")


#: Spawn key of the topology's seed under the run seed (see :func:`neighbour_graph`).
TOPOLOGY_SEED_KEY = 0


def neighbour_graph(topology: str, peers: str | None, n: int, seed: int) -> Adjacency:
    """The run's neighbour graph, identical in every driver for the same settings.

    A peers file wins over a named topology; a random topology takes its seed from the run
    seed's ``TOPOLOGY_SEED_KEY`` child, so ``sim``, ``local`` and ``agent`` build one graph.
    """
    if peers:
        return load_peers(peers)
    child = np.random.SeedSequence(seed).spawn(TOPOLOGY_SEED_KEY + 1)[TOPOLOGY_SEED_KEY]
    return make_topology(topology, n, seed=int(child.generate_state(1)[0]))
