"""The ActionUrl -> provider registry, and the providers of one running engine.

It sits above ``base`` (the contract) and the built-in providers (``transfer``,
``compute``), which know nothing of it: the built-ins are registered here at import, so
nothing imports back and no import cycle exists, deferred or not. Plugins named by entry
points are loaded once, at the first engine built, so a broken plugin cannot break imports.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Callable, Iterator

from ptychoflow.flowengine.providers import compute, transfer
from ptychoflow.flowengine.providers.base import ActionProvider, ActionUnableToRun, EngineEnv

ProviderFactory = Callable[[EngineEnv], ActionProvider]
ENTRY_POINT_GROUP = "ptychoflow.action_providers"

_FACTORIES: dict[str, ProviderFactory] = {url.rstrip("/"): factory
                                          for url, factory in {**transfer.FACTORIES, **compute.FACTORIES}.items()}
_plugins_loaded = False


def register_provider(url: str, factory: ProviderFactory) -> None:
    """Map an ActionUrl to a provider factory (replaces any previous one for that URL).

    Engine worker processes also load ``{url: factory}`` mappings named by entry points in
    the ``ptychoflow.action_providers`` group, so a facility package can add providers
    without touching ptychoflow (an in-process registration only reaches in-process engines).
    """
    _FACTORIES[url.rstrip("/")] = factory


def unregister_provider(url: str) -> None:
    _FACTORIES.pop(url.rstrip("/"), None)


@contextmanager
def provider_registered(url: str, factory: ProviderFactory) -> Iterator[None]:
    """``register_provider`` for the duration of a ``with`` block; then the URL's previous
    provider (a built-in one, say) is back. For tests that stand in for a real provider."""
    key = url.rstrip("/")
    previous = _FACTORIES.get(key)
    _FACTORIES[key] = factory
    try:
        yield
    finally:
        if previous is None:
            _FACTORIES.pop(key, None)
        else:
            _FACTORIES[key] = previous


def registered_urls() -> list[str]:
    _load_plugins()
    return sorted(_FACTORIES)


def build_providers(env: EngineEnv) -> Providers:
    """Instantiate every registered provider for one engine."""
    _load_plugins()
    return Providers({url: factory(env) for url, factory in _FACTORIES.items()})


class Providers:
    """The providers of one running engine, looked up by ActionUrl."""

    def __init__(self, by_url: dict[str, ActionProvider]) -> None:
        self.by_url = by_url

    def for_url(self, url: str) -> ActionProvider:
        provider = self.by_url.get(url.rstrip("/"))
        if provider is None:
            known = ", ".join(sorted(self.by_url))
            raise ActionUnableToRun(f"no local action provider for {url} (known: {known})")
        return provider

    def close(self) -> None:
        for provider in self.by_url.values():
            provider.close()


def _load_plugins() -> None:
    """Add the entry-point providers once; a URL registered in-process keeps its factory."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):  # each names a {url: factory} mapping
        for url, factory in entry.load().items():
            _FACTORIES.setdefault(url.rstrip("/"), factory)
