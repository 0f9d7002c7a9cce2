"""Tests of the consensus core, its simulation and the UDP transport."""
