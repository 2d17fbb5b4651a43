"""Tree message passing as pure functions (COOL-GP Sec. 3.4; DESIGN.md Sec. 2).

On a tree, the message from agent a to neighbour b is
``M_ab = R_a + sum_{k in T(a), k != b} (M_ka - R_0)`` and a's collective model is
``R_F(a) = R_a + sum_{k in T(a)} (M_ka - R_0)``. Both are :func:`~.summary.fuse` of the local
summary and the incoming messages, so each equals the exact sum over the agents it covers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from swarmgp.fusion.summary import Summary, fuse

__all__ = ["tree_fused", "tree_message"]


def tree_message(local: Summary, incoming: Mapping[Hashable, Summary], to: Hashable) -> Summary:
    """The message to neighbour ``to``: the local summary fused with every other incoming one.

    Parameters
    ----------
    local : Summary
        This agent's local summary ``R_a``.
    incoming : mapping of neighbour id to Summary
        The latest message ``M_ka`` from each tree neighbour k.
    to : hashable
        The recipient; its own message is left out so its information never echoes back.

    Returns
    -------
    Summary
    """
    parts = [local] + [msg for k, msg in sorted(incoming.items(), key=_key) if k != to]
    return fuse(parts, local.m, local.encoding_hash)


def tree_fused(local: Summary, incoming: Mapping[Hashable, Summary]) -> Summary:
    """The collective model ``R_F(a)``: the local summary fused with every incoming message."""
    parts = [local] + [msg for _, msg in sorted(incoming.items(), key=_key)]
    return fuse(parts, local.m, local.encoding_hash)


def _key(item: tuple[Hashable, Summary]) -> str:
    # a fixed summation order makes the result bit-reproducible whatever the arrival order
    return repr(item[0])
