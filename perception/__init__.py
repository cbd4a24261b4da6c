"""Real-time perception node: camera frames -> segmentation engine -> ZeroMQ."""

__version__ = "0.1.0"
