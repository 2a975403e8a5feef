"""The ``globus`` backend: Globus Flows, Globus Compute and Transfer through globus-sdk v4.

Modules: ``auth`` (apps, token storage, scopes), ``flows`` (checksum-keyed deploy),
``runs`` (run documents -> RunInfo), ``compute`` (function registration, endpoint checks),
``transfer`` (collection and task status), ``errors`` (one-line explanations),
``collections`` (which take data_access), ``requirements`` (GAREs -> login lines),
``validation`` (validate_flow/validate_run), ``preflight``, ``retry`` (SDK retry config).
"""

from ptychoflow.backends.globus.backend import GlobusBackend

__all__ = ["GlobusBackend"]
