"""The gateway's detection stage: family rules, statistical detectors, the offline check,
the anomaly book, and the detection state kept across restarts (snapshot, resume)."""
