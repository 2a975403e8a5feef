"""Action providers chosen by ActionUrl: ``base`` is the contract, ``registry`` the mapping."""

from ptychoflow.flowengine.providers.base import (
    ActionFailed,
    ActionProvider,
    ActionUnableToRun,
    EngineEnv,
    FunctionProvider,
    ThreadedProvider,
)
from ptychoflow.flowengine.providers.registry import (
    Providers,
    build_providers,
    provider_registered,
    register_provider,
    registered_urls,
    unregister_provider,
)

__all__ = [
    "ActionFailed", "ActionProvider", "ActionUnableToRun", "EngineEnv", "FunctionProvider", "Providers",
    "ThreadedProvider", "build_providers", "provider_registered", "register_provider", "registered_urls", "unregister_provider",
]
