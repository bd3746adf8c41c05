"""Edge agent: one per estate; reads devices, spools readings durably, publishes over MQTT."""
