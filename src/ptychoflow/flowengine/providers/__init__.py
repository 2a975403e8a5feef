"""Action providers chosen by ActionUrl; see ``base`` for the contract and registry."""

from ptychoflow.flowengine.providers.base import (
    ActionFailed,
    ActionProvider,
    ActionUnableToRun,
    EngineEnv,
    FunctionProvider,
    Providers,
    ThreadedProvider,
    build_providers,
    register_provider,
    registered_urls,
    unregister_provider,
)

__all__ = [
    "ActionFailed", "ActionProvider", "ActionUnableToRun", "EngineEnv", "FunctionProvider", "Providers",
    "ThreadedProvider", "build_providers", "register_provider", "registered_urls", "unregister_provider",
]
