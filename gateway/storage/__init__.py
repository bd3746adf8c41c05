"""The gateway's storage stage: InfluxDB points, the writer, its disk spool and the dead
letters."""
