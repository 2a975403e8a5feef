"""The ``globus`` backend: Globus Flows, Globus Compute and Transfer through globus-sdk v4.

Modules: ``auth`` (apps, token storage, scopes), ``flows`` (checksum-keyed deploy),
``runs`` (run documents -> RunInfo), ``compute`` (function registration, endpoint checks),
``transfer`` (collection and task status), ``errors`` (one-line explanations),
``retry`` (SDK retry config, polling backoff), ``api`` (plain functions for the CLI).
"""

from ptychoflow.backends.globus.backend import GlobusBackend

__all__ = ["GlobusBackend"]
