"""The local flow engine: a durable interpreter of the Globus Flows language.

Modules, one job each:
  definition  - load and validate a flow definition (what the service would reject)
  paths       - JSONPath get/set on the run's state document (jsonpath-ng)
  expressions - safe evaluator for ``.=`` expressions (Python ``ast``, never ``eval``)
  parameters  - render ``Parameters`` templates (``.$`` paths, ``.=`` expressions, literals)
  choice      - Choice-rule comparison operators
  store       - SQLite store of flows, runs, state steps and events (WAL, durable commits)
  providers   - the provider contract (base), the ActionUrl -> provider registry (registry),
                local transfer and compute
  interpreter - executes states of one run, committing each transition
  worker      - the engine worker process loop, single-instance guard, ``ensure_engine_running``
"""
