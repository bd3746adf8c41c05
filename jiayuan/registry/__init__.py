"""The product registry: districts, streets, property companies, estates, buildings, devices.

The simulators' registry (``simulators/registry.py``) says which devices exist and how they
behave; this one adds what the estate safety score and the operations staff need to know
about them: housing category, service-fee band, property company, location, households,
device models, install, inspection and assessment dates, charging ports.  See
``docs/registry.md``.
"""
