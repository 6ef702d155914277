"""Helpers shared by the test modules (clients and probes for nodes in subprocesses, bag
readers and synthetic frames). Test modules import from here, never from each other."""
