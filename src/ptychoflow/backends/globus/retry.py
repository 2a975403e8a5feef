"""Retries for the Globus services.

HTTP-level retries (429/5xx, connection errors) are the SDK's job: every client we build
gets :func:`sdk_retry_config`. How often *we* ask "is the run done yet?" is
:mod:`ptychoflow.backends.polling`'s.
"""

from __future__ import annotations

import os

from globus_sdk.transport import RetryConfig

DEFAULT_MAX_RETRIES = 5


def sdk_retry_config() -> RetryConfig:
    """The SDK's own retry policy, with the attempt count overridable for flaky sites."""
    retries = int(os.environ.get("PTYCHOFLOW_GLOBUS_MAX_RETRIES", DEFAULT_MAX_RETRIES))
    return RetryConfig(max_retries=retries, max_sleep=30)
