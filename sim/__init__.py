"""swarmgp.sim."""
