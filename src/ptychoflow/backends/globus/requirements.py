"""What Globus Auth asks for before a request (or an INACTIVE run) can go on.

Services state it as a Globus Auth Requirements Error (GARE): consents to add
(``required_scopes``) and session conditions (identities, policies, a single domain, MFA).
It arrives in an API error's body or, for a run waiting on a consent, in the run's
``details``; the SDK's :func:`globus_sdk.gare.to_gare` reads both shapes, including the
older ``ConsentRequired`` + ``required_scope(s)`` form. globus-cli answers a GARE with
``globus session consent SCOPE`` or ``globus session update IDENTITY|--policy P``;
ptychoflow's equivalent is one ``ptychoflow login`` line carrying the same requirements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from globus_sdk.gare import GARE, GlobusAuthorizationParameters, to_gare


@dataclass(frozen=True)
class AuthRequirements:
    """The consents and session conditions one GARE states."""

    code: str = ""
    scopes: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    mfa: bool = False
    message: str = ""

    @classmethod
    def from_gare(cls, gare: GARE) -> "AuthRequirements":
        params = gare.authorization_parameters
        return cls(
            code=gare.code or "",
            scopes=tuple(params.required_scopes or ()),
            identities=tuple(params.session_required_identities or ()),
            policies=tuple(params.session_required_policies or ()),
            domains=tuple(params.session_required_single_domain or ()),
            mfa=bool(params.session_required_mfa),
            message=params.session_message or "",
        )

    @classmethod
    def find(cls, source: Any) -> "AuthRequirements | None":
        """From an SDK error, an error body or a run's ``details``; None when there is no GARE."""
        if isinstance(source, Mapping):
            source = dict(source)
        gare = to_gare(source) if source is not None else None
        return None if gare is None else cls.from_gare(gare)

    @property
    def session(self) -> bool:
        """True when the user must log in again under conditions, not only consent."""
        return bool(self.identities or self.policies or self.domains or self.mfa)

    def __bool__(self) -> bool:
        return bool(self.scopes) or self.session

    def login_args(self) -> list[str]:
        """``ptychoflow login`` options that ask Globus Auth for exactly this."""
        args: list[str] = []
        for flag, values in (("--scope", self.scopes), ("--identity", self.identities),
                             ("--policy", self.policies), ("--domain", self.domains)):
            for value in values:
                args += [flag, value]
        return args + (["--mfa"] if self.mfa else [])

    def authorization_parameters(self) -> GlobusAuthorizationParameters:
        """The same requirements as the SDK's login parameters (``UserApp.login(auth_params=...)``)."""
        return GlobusAuthorizationParameters(
            required_scopes=list(self.scopes) or None,
            session_required_identities=list(self.identities) or None,
            session_required_policies=list(self.policies) or None,
            session_required_single_domain=list(self.domains) or None,
            session_required_mfa=True if self.mfa else None,
            session_message=self.message or None,
            prompt="login" if self.session else None,
        )

    def describe(self) -> str:
        """A short phrase for one-line messages: what is missing."""
        parts = []
        if self.scopes:
            parts.append("consent to " + ", ".join(self.scopes))
        if self.identities:
            parts.append("a login with " + ", ".join(self.identities))
        if self.domains:
            parts.append("a login from " + ", ".join(self.domains))
        if self.policies:
            parts.append("a session meeting policy " + ", ".join(self.policies))
        if self.mfa:
            parts.append("multi-factor authentication")
        return "; ".join(parts) or self.code or "authentication"
