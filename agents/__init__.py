"""swarmgp.agents."""
