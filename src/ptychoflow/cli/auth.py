"""``ptychoflow login | logout | whoami``: Globus credentials for people and the watcher.

Output never contains a token or a client secret, in text or ``--json``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import emit, json_option, load, profile_option
from ptychoflow.errors import CredentialsError
from ptychoflow.profile import Profile


def _globus():
    """Imported on use: globus-sdk is only needed by these commands."""
    from ptychoflow.backends.globus import auth, errors

    return auth, errors


def _known_flows(profile: Profile) -> list[str]:
    from ptychoflow.backends.globus.flows import FlowState

    pinned = [profile.globus.flow_id] if profile.globus.flow_id else []
    return list(dict.fromkeys(pinned + FlowState(profile.state_path).flow_ids()))


@click.command()
@profile_option
@click.option("--flow", "flow_ids", multiple=True, metavar="FLOW_ID", help="Consent to run this flow (repeatable; default: deployed and pinned flows).")
@click.option("--collection", "collection_ids", multiple=True, metavar="COLLECTION_ID",
              help="Grant data_access on this GCS mapped collection to the flows (repeatable). Not for guest collections.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="Consent to this exact scope string, as an error or an INACTIVE run asked (repeatable).")
@click.option("--identity", "identities", multiple=True, metavar="ID_OR_USERNAME",
              help="Log in with this identity (a session requirement; repeatable).")
@click.option("--policy", "policies", multiple=True, metavar="POLICY_ID",
              help="Meet this Globus Auth policy (a session requirement; repeatable).")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="Log in with an identity from this domain (a session requirement; repeatable).")
@click.option("--mfa", is_flag=True, help="Log in with multi-factor authentication (a session requirement).")
@click.option("--force", is_flag=True, help="Log in again even if stored tokens look valid (to add consents).")
@json_option
def login(profile_path: Path | None, flow_ids: tuple[str, ...], collection_ids: tuple[str, ...], scopes: tuple[str, ...],
          identities: tuple[str, ...], policies: tuple[str, ...], domains: tuple[str, ...], mfa: bool, force: bool,
          as_json: bool) -> None:
    """Log in to Globus once; tokens are kept in a file only you can read (0600).

    You rarely compose the consent options yourself: when Globus asks for more (a missing
    consent, a session that must use another identity, a policy or MFA), ptychoflow's
    error line, `runs show` and `runs resume` print this command with them filled in.

    \b
    Examples:
      ptychoflow login
      ptychoflow login --flow 1b2c... --collection 7e1b... --force   # data_access on a mapped collection
      ptychoflow login --scope 'https://auth.globus.org/scopes/1b2c.../flow_1b2c..._user[...]' --force
      ptychoflow login --identity ada@anl.gov --mfa --force          # what a session requirement asked
      PTYCHOFLOW_CLIENT_ID=... PTYCHOFLOW_CLIENT_SECRET=... ptychoflow login   # check the watcher's client
    """
    from ptychoflow.backends.globus.requirements import AuthRequirements

    auth, errors = _globus()
    profile = load(profile_path)
    flows = list(flow_ids) or _known_flows(profile)
    if collection_ids and not flows:
        raise click.UsageError("--collection consents are granted to a flow: pass --flow FLOW_ID (or deploy the flow first)")
    _refuse_collections_without_data_access(profile, collection_ids)
    identity = auth.resolve_identity(profile)
    asked = AuthRequirements(scopes=scopes, identities=identities, policies=policies, domains=domains, mfa=mfa)
    if asked.session and identity.kind == "client":
        raise click.UsageError("session requirements (--identity, --policy, --domain, --mfa) apply to people, not to the watcher's client")
    with errors.explained(profile, flow_ids=flows, collection_ids=collection_ids, action="login"):
        app = auth.build_app(profile, flow_ids=flows, collection_ids=collection_ids, interactive=True)
        app.login(auth_params=asked.authorization_parameters() if asked else None, force=force or bool(asked))
    result = {"kind": identity.kind, "client_id": identity.client_id, "flows": flows, "collections": list(collection_ids),
              "scopes": list(scopes), "session": {"identities": list(identities), "policies": list(policies),
                                                 "domains": list(domains), "mfa": mfa}}
    if identity.kind == "user":
        result["token_file"] = str(auth.token_file())
    where = f"; tokens in {result['token_file']} (mode 0600)" if identity.kind == "user" else " (client credentials, nothing stored)"
    emit(result, as_json, f"Logged in to Globus as {identity.kind} {identity.client_id}{where}")


def _refuse_collections_without_data_access(profile: Profile, collection_ids: tuple[str, ...]) -> None:
    """Globus Auth refuses the whole login ("Unknown Scope") for a collection without data_access."""
    from ptychoflow.backends.globus.collections import CollectionTypes, needs_data_access

    known = CollectionTypes(profile.state_path).known()
    for collection in collection_ids:
        doc = known.get(collection)
        if doc is not None and not needs_data_access(doc):
            kind = doc["entity_type"] + (" (High Assurance)" if doc.get("high_assurance") else "")
            raise click.UsageError(f"collection {collection} is a {kind}: it has no data_access consent to grant; leave it out")


@click.command()
@profile_option
@json_option
def logout(profile_path: Path | None, as_json: bool) -> None:
    """Revoke and forget the stored Globus tokens.

    \b
    Example:
      ptychoflow logout
    """
    auth, errors = _globus()
    profile = load(profile_path)
    identity = auth.resolve_identity(profile)
    if identity.kind == "client":
        emit({"kind": "client", "revoked": False}, as_json, "Service client credentials come from the environment; unset them to log out.")
        return
    with errors.explained(profile, action="logout"):
        auth.build_app(profile).logout(sweep=True)
    emit({"kind": "user", "revoked": True, "token_file": str(auth.token_file())}, as_json, "Logged out; stored tokens revoked.")


@click.command()
@profile_option
@json_option
def whoami(profile_path: Path | None, as_json: bool) -> None:
    """Show which Globus identity ptychoflow acts as.

    \b
    Examples:
      ptychoflow whoami
      ptychoflow whoami --json | jq .username
    """
    import globus_sdk

    auth, errors = _globus()
    profile = load(profile_path)
    identity = auth.resolve_identity(profile)
    with errors.explained(profile, action="whoami"):
        app = auth.build_app(profile)
        if app.login_required():
            raise CredentialsError(f"not logged in to Globus; run `{auth.login_command(profile)}`")
        info = globus_sdk.AuthClient(app=app).userinfo()
    result = {
        "kind": identity.kind,
        "client_id": identity.client_id,
        "identity_id": info.get("sub"),
        "username": info.get("preferred_username"),
        "name": info.get("name"),
        "email": info.get("email"),
    }
    emit(result, as_json, f"{result['username']} ({result['name'] or 'no name'}), identity {result['identity_id']}, as {identity.kind}")
