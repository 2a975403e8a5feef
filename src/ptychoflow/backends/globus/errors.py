"""Turn Globus failures into one line that says what to do next.

The SDK raises rich exceptions (token validation errors, 401/403 with ``ConsentRequired``
or ``MISSING_SCOPE``, network errors). Users of a beamline service need the command that
fixes it, not a traceback; and the message must never echo a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import globus_sdk
from globus_sdk.gare import to_gare
from globus_sdk.token_storage import TokenValidationError

from ptychoflow.errors import CredentialsError, PtychoflowError
from ptychoflow.profile import Profile

from .auth import ENV_CLIENT_ID, login_command, profile_collections, resolve_identity

CONSENT_CODES = {"ConsentRequired", "MISSING_SCOPE", "AuthenticationFailed", "UNAUTHORIZED"}


class GlobusServiceError(PtychoflowError):
    """A Globus service refused a request for a reason other than credentials."""


def _remedy(profile: Profile, flow_ids: Iterable[str]) -> str:
    try:
        identity = resolve_identity(profile)
    except CredentialsError:
        identity = None
    if identity is not None and identity.kind == "client":
        return (
            f"the service client {identity.client_id} ({ENV_CLIENT_ID}) lacks this permission: add it to the "
            "flow's Globus group and grant it access on the collections"
        )
    return f"run `{login_command(profile, flow_ids, profile_collections(profile))}`"


def explain(exc: Exception, profile: Profile, *, flow_ids: Iterable[str] = (), action: str = "") -> PtychoflowError:
    """Map an SDK exception to a one-line ptychoflow error (credentials or service)."""
    flows = list(flow_ids)
    doing = f"{action}: " if action else ""
    if isinstance(exc, TokenValidationError):
        return CredentialsError(f"{doing}not logged in to Globus, or a consent is missing; {_remedy(profile, flows)}")
    if isinstance(exc, globus_sdk.NetworkError):
        return GlobusServiceError(f"{doing}cannot reach Globus ({type(exc).__name__}); retried and gave up, check the network")
    if isinstance(exc, globus_sdk.GlobusAPIError):
        code = exc.code or ""
        if exc.http_status == 401 or code in CONSENT_CODES or to_gare(exc) is not None:
            scopes = exc.info.consent_required.required_scopes if exc.info.consent_required else []
            need = f" (needs consent for {', '.join(scopes)})" if scopes else ""
            return CredentialsError(f"{doing}Globus {exc.http_status} {code}{need}; {_remedy(profile, flows)}")
        message = exc.message or exc.http_reason
        return GlobusServiceError(f"{doing}Globus said {exc.http_status} {code}: {message}")
    return GlobusServiceError(f"{doing}{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def explained(profile: Profile, *, flow_ids: Iterable[str] = (), action: str = "") -> Iterator[None]:
    """Context manager: any SDK failure inside leaves as :func:`explain`'s one-liner."""
    try:
        yield
    except (TokenValidationError, globus_sdk.GlobusError) as exc:
        raise explain(exc, profile, flow_ids=flow_ids, action=action) from None
