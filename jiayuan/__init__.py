"""家园 Jiayuan: IoT safety monitoring for residential estates.

This package is the foundation every other imports: the family catalogue, the wire
contract, configuration, the state directory, the InfluxDB client, authentication, the
registry and the shared types.  It imports none of the product or the tools.
"""

__version__ = "0.1.0"
