"""Gateway: MQTT ingest (``transport``), validation and detection (``detection``), InfluxDB
writer (``storage``) and the HTTP API."""
