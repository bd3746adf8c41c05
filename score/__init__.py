"""The estate safety score: per-estate scores, Songjiang grades, company ranking, its API
and its InfluxDB points.  It reads the alert lifecycle (``alerts``) and the registry."""
