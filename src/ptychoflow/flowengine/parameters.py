"""Render a state's ``Parameters`` template against the state document.

Service semantics: a key ending in ``.$`` takes the value at a JSONPath (missing is an
error), a key ending in ``.=`` takes the value of an expression, and every other key is a
literal at every depth (its value is still searched for nested ``.$``/``.=`` keys).
"""

from __future__ import annotations

from typing import Any

from ptychoflow.flowengine.errors import StateError, runtime_error
from ptychoflow.flowengine.expressions import evaluate
from ptychoflow.flowengine.limits import DEFAULT_LIMITS, RunLimits
from ptychoflow.flowengine.paths import get_path


def scope_with_context(document: Any, context: dict[str, Any]) -> Any:
    """The document as paths and expressions see it: ``$._context`` is always readable."""
    if isinstance(document, dict):
        return {**document, "_context": context}
    return {"_context": context}


def select(document: Any, context: dict[str, Any], path: str) -> Any:
    """The value at ``path`` (``InputPath``, ``.$``). ``$._context`` is readable, but ``$`` is the
    document itself: the context is virtual and never copied into a body or the state."""
    if path == "$":
        return document
    return get_path(scope_with_context(document, context), path)


def render(template: Any, document: Any, context: dict[str, Any], limits: RunLimits = DEFAULT_LIMITS) -> Any:
    """Resolve ``template`` (a Parameters object) against ``document``."""
    return _Renderer(document, context, limits).render(template, "Parameters")


PRIVATE_KEY = "__Private_Parameters"
PRIVATE_MASK = "<private>"


class _Renderer:
    def __init__(self, document: Any, context: dict[str, Any], limits: RunLimits) -> None:
        self.document, self.context, self.limits = document, context, limits
        self.scope = scope_with_context(document, context)

    def render(self, template: Any, where: str) -> Any:
        if isinstance(template, dict):
            out: dict[str, Any] = {}
            for key, value in template.items():
                if key == PRIVATE_KEY:
                    continue  # names values to hide from logs; never sent to the action
                if key.endswith(".$"):
                    if not isinstance(value, str):
                        raise runtime_error(f"{where}.{key}: a '.$' value must be a JSONPath string")
                    out[key[:-2]] = _resolve(lambda: select(self.document, self.context, value), where, key)
                elif key.endswith(".="):
                    out[key[:-2]] = _resolve(lambda: evaluate(value, self.scope, self.context, self.limits), where, key)
                else:
                    out[key] = self.render(value, f"{where}.{key}")
            return out
        if isinstance(template, list):
            return [self.render(item, f"{where}[{i}]") for i, item in enumerate(template)]
        return template


def redact(template: Any, rendered: Any) -> Any:
    """``rendered`` with the values named in ``__Private_Parameters`` (at any depth) masked."""
    if isinstance(template, dict) and isinstance(rendered, dict):
        private = set(template.get(PRIVATE_KEY, []))
        out = {}
        for key, value in rendered.items():
            source = next((k for k in (key, f"{key}.$", f"{key}.=") if k in template), None)
            out[key] = PRIVATE_MASK if key in private else redact(template.get(source), value)
        return out
    if isinstance(template, list) and isinstance(rendered, list):
        return [redact(t, r) for t, r in zip(template, rendered)] + rendered[len(template):]
    return rendered


def hide_private_state(document: Any) -> Any:
    """The state as users may see it: top-level properties named ``_private*`` are omitted."""
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if not k.startswith("_private")}
    return document


def _resolve(compute: Any, where: str, key: str) -> Any:
    """Run ``compute``; a failure keeps its error name and gains the parameter it came from."""
    try:
        return compute()
    except StateError as exc:
        raise StateError(exc.name, f"{where}.{key}: {exc.cause}") from None
