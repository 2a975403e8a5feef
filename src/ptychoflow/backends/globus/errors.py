"""Turn Globus failures into one line that says what to do next.

The SDK raises rich exceptions: token validation errors, a refused refresh token, 401s,
403s carrying a Globus Auth Requirements Error (consents and session conditions, see
:mod:`.requirements`), network errors. Users of a beamline service need the command that
fixes it, not a traceback; and the message must never echo a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import globus_sdk
from globus_sdk.token_storage import TokenValidationError

from ptychoflow.errors import CredentialsError, PtychoflowError
from ptychoflow.profile import Profile

from .auth import ENV_CLIENT_ID, Identity, login_command, resolve_identity
from .requirements import AuthRequirements

CONSENT_CODES = {"ConsentRequired", "MISSING_SCOPE", "AuthenticationFailed", "UNAUTHORIZED", "AUTHENTICATION_ERROR"}
# Globus Auth's answer to a refresh token that expired, was revoked, or belongs to a
# deleted consent; and to client credentials it does not accept.
REFUSED_GRANTS = {"invalid_grant", "invalid_client", "unauthorized_client"}


class GlobusServiceError(PtychoflowError):
    """A Globus service refused a request for a reason other than credentials."""


def _identity(profile: Profile) -> Identity | None:
    try:
        return resolve_identity(profile)
    except CredentialsError:
        return None


def remedy(
    profile: Profile,
    flow_ids: Iterable[str] = (),
    collection_ids: Iterable[str] = (),
    requirements: AuthRequirements | None = None,
) -> str:
    """What fixes a credentials problem: a login line for people, a grant for the watcher's client."""
    identity = _identity(profile)
    if identity is not None and identity.kind == "client":
        need = f" ({requirements.describe()})" if requirements else ""
        return (
            f"the service client {identity.client_id} ({ENV_CLIENT_ID}) cannot log in interactively{need}: add it to "
            "the flow's Globus group, map it on the endpoints and grant it access on the collections (docs/globus.md)"
        )
    return f"run `{login_command(profile, flow_ids, collection_ids, requirements)}`"


def oauth_error(exc: globus_sdk.GlobusAPIError) -> str | None:
    """The OAuth2 ``error`` of a refused token request (``{"error": "invalid_grant"}``)."""
    body = exc.raw_json if isinstance(exc.raw_json, dict) else {}
    error = body.get("error")
    return exc.code or (error if isinstance(error, str) else None)


def explain(
    exc: Exception,
    profile: Profile,
    *,
    flow_ids: Iterable[str] = (),
    collection_ids: Iterable[str] = (),
    action: str = "",
) -> PtychoflowError:
    """Map an SDK exception to a one-line ptychoflow error (credentials or service).

    ``collection_ids`` are the collections that take a data_access consent: only those may
    appear in a login line.
    """
    flows, collections = list(flow_ids), list(collection_ids)
    doing = f"{action}: " if action else ""
    if isinstance(exc, TokenValidationError):
        return CredentialsError(f"{doing}not logged in to Globus, or a consent is missing; {remedy(profile, flows, collections)}")
    if isinstance(exc, globus_sdk.NetworkError):
        return GlobusServiceError(f"{doing}cannot reach Globus ({type(exc).__name__}); retried and gave up, check the network")
    if isinstance(exc, globus_sdk.AuthAPIError) and (grant := oauth_error(exc)) in REFUSED_GRANTS:
        what = "client credentials were refused" if grant != "invalid_grant" else "Globus login has expired or was revoked"
        return CredentialsError(f"{doing}the {what} ({grant}); {remedy(profile, flows, collections)}")
    if isinstance(exc, globus_sdk.GlobusAPIError):
        code = exc.code or ""
        requirements = AuthRequirements.find(exc)
        if requirements:
            return CredentialsError(
                f"{doing}Globus {exc.http_status} {code}: needs {requirements.describe()}; "
                f"{remedy(profile, flows, collections, requirements)}"
            )
        if exc.http_status == 401 or code in CONSENT_CODES:
            return CredentialsError(f"{doing}Globus {exc.http_status} {code}; {remedy(profile, flows, collections)}")
        message = exc.message or exc.http_reason
        return GlobusServiceError(f"{doing}Globus said {exc.http_status} {code}: {message}")
    return GlobusServiceError(f"{doing}{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def explained(
    profile: Profile, *, flow_ids: Iterable[str] = (), collection_ids: Iterable[str] = (), action: str = ""
) -> Iterator[None]:
    """Context manager: any SDK failure inside leaves as :func:`explain`'s one-liner."""
    try:
        yield
    except (TokenValidationError, globus_sdk.GlobusError) as exc:
        raise explain(exc, profile, flow_ids=flow_ids, collection_ids=collection_ids, action=action) from None
