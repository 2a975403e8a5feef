"""The local flow engine: a durable interpreter of the Globus Flows language.

Modules, one job each:
  definition     - load and validate a flow definition (what the service would reject)
  paths          - JSONPath get/set on the run's state document (plain paths here, the rest jsonpath-ng)
  expressions    - safe evaluator for ``.=`` expressions (Python ``ast``, never ``eval``), bounded
  parameters     - render ``Parameters`` templates (``.$`` paths, ``.=`` expressions, literals)
  choice         - Choice-rule comparison operators
  limits         - the bounds of a run (transitions, state size, expression time and size)
  failure        - why a run failed, in one line
  store          - SQLite store of flows, runs, state steps and events (WAL, durable commits)
  action_journal - what a provider remembers of each action across restarts
  process_slots  - worker processes that can be killed one task at a time and die with their parent
  providers      - the provider contract (base), the ActionUrl -> provider registry (registry),
                   local transfer and compute
  interpreter    - executes states of one run, committing each transition
  worker         - the engine worker process loop, single-instance guard, ``ensure_engine_running``
"""
