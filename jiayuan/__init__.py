"""家园 Jiayuan: IoT safety monitoring for residential estates."""

__version__ = "0.1.0"
