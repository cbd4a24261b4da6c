"""Offline replay of many drives through the node's own pipeline, spread over workers (Ray or processes)."""
