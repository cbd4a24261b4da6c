"""Offline tooling a developer runs: precision variants, calibration, accuracy gates, graph folding,
inspection, doctor, comparing recordings. The node never imports this package."""
