"""Gateway: MQTT ingest, validation, detection, InfluxDB writer and the HTTP API."""
