"""Statistical detectors: their parameters, the vectorised detectors, and the per-device
series that feed them readings."""
