"""Helpers the tests share: an MQTT publisher, lift readings, alert fixtures' builders."""
