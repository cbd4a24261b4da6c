"""The node as a robot runs it: launch config, pipeline, inference stage, node assembly, latency."""
