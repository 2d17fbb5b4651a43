"""swarmgp.protocol."""
