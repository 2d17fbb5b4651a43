"""Peer table: liveness, expiry, incarnations, departures."""

from __future__ import annotations

from swarmgp.agents.peers import Admit, PeerTable


def test_first_contact_then_ok_then_expiry_and_revival() -> None:
    t = PeerTable(1.0)
    t.add(3)
    assert t.live() == frozenset()
    assert t.admit(3, 10, now=0.0) is Admit.NEW
    assert t.admit(3, 10, now=0.5) is Admit.OK
    assert t.expire(1.4) == []
    assert t.expire(1.6) == [3] and t.live() == frozenset()
    assert t.admit(3, 10, now=2.0) is Admit.REVIVED
    assert t.live() == {3}


def test_incarnations() -> None:
    t = PeerTable(1.0)
    t.add(1)
    t.admit(1, 5, 0.0)
    p = t.get(1)
    p.state_seq, p.fuse_seq = 40, 41
    assert t.admit(1, 4, 0.1) is Admit.STALE  # an older life
    assert t.admit(1, 6, 0.2) is Admit.NEW  # a restart resets per-peer sequence state
    assert (p.state_seq, p.fuse_seq, p.incarnation) == (-1, -1, 6)


def test_goodbye_until_new_incarnation() -> None:
    t = PeerTable(1.0)
    t.add(2)
    t.admit(2, 1, 0.0)
    t.depart(2)
    assert t.live() == frozenset()
    assert t.admit(2, 1, 0.1) is Admit.DEPARTED
    assert t.live() == frozenset()
    assert t.admit(2, 2, 0.2) is Admit.NEW and t.live() == {2}


def test_ids_sorted_and_configured_flag() -> None:
    t = PeerTable(1.0)
    for i in (5, 1, 3):
        t.add(i, configured=(i != 3))
    assert t.ids() == [1, 3, 5] and not t.get(3).configured and len(t) == 3 and 5 in t
