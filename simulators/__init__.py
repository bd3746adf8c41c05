"""Device models for every sensor family, estate registry, fault injection with labels.

Entry points:

- ``simulators.registry.build_registry(estates, seed)`` → ``Registry`` (JSON round trip
  with ``to_json`` / ``Registry.from_json``);
- ``simulators.faults.plan_faults(registry, start_ms, duration_s, seed)`` → ``FaultPlan``
  (``faults``, ``skipped``), ``write_labels`` / ``read_labels``;
- ``simulators.driver.SimulatedDriver(registry, estate_id, faults, start_ms, seed)``, an
  ``edge.drivers.Driver`` for one estate, and ``simulators.driver.generate(...)``, every
  sample of many estates in time order without waiting for real time;
- ``jiayuan simulate`` (``simulators.cli``) writes all of it to files.

One model per family (``lift.py``, ``fire.py``, ``water_tank.py``, ``ebike_charger.py``,
``waterlogging.py``) on the shared loop in ``base.py``.
"""
