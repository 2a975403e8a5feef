"""Who ptychoflow is to Globus: a person (``UserApp``) or the unattended watcher (``ClientApp``).

People log in once with ``ptychoflow login``; their tokens live in one JSON file that only
they can read (mode 0600 in a 0700 directory, enforced on every write, not just hoped for
through the umask). The watcher runs as a confidential client whose id and secret come
from ``PTYCHOFLOW_CLIENT_ID`` / ``PTYCHOFLOW_CLIENT_SECRET`` and whose tokens never touch
disk. Apps built here never start a login by surprise: a missing token or consent becomes
one :class:`CredentialsError` naming the command that fixes it.

Both apps carry every flow's scope with the Transfer ``data_access`` consents beneath it,
for exactly the collections that take one (:mod:`.collections`): the watcher asks for
them with its client credentials, a person grants them at login.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import globus_sdk
from globus_sdk.scopes import AuthScopes, ComputeScopes, FlowsScopes, GCSCollectionScopes, Scope, TransferScopes
from globus_sdk.token_storage import JSONTokenStorage, MemoryTokenStorage, TokenStorage

from ptychoflow.errors import CredentialsError
from ptychoflow.profile import Profile

from .requirements import AuthRequirements

log = logging.getLogger(__name__)

APP_NAME = "ptychoflow"
ENV_CLIENT_ID = "PTYCHOFLOW_CLIENT_ID"
ENV_CLIENT_SECRET = "PTYCHOFLOW_CLIENT_SECRET"
ENV_TOKEN_DIR = "PTYCHOFLOW_TOKEN_DIR"
TOKEN_FILENAME = "globus-tokens.json"
FILE_MODE = 0o600
DIR_MODE = 0o700


def token_dir() -> Path:
    """``$PTYCHOFLOW_TOKEN_DIR``, else ``$XDG_CONFIG_HOME/ptychoflow``, else ``~/.config/ptychoflow``."""
    if explicit := os.environ.get(ENV_TOKEN_DIR):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "ptychoflow"


def token_file() -> Path:
    return token_dir() / TOKEN_FILENAME


def _private_directory(directory: Path) -> None:
    """Refuse a token directory others share or own; tighten one of our own that is merely readable.

    A shared directory (sticky, like /tmp's 1777, or writable by group or others) is never
    chmodded: it belongs to everyone who uses it, and anyone who can write there could swap
    the token file. The caller must point ``PTYCHOFLOW_TOKEN_DIR`` at a directory of their own.
    """
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return
    where = f"{directory}: {ENV_TOKEN_DIR if os.environ.get(ENV_TOKEN_DIR) else 'token directory'}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise CredentialsError(f"{where}: is {'a symlink' if stat.S_ISLNK(st.st_mode) else 'not a directory'}; "
                               "tokens must live in a real directory of your own")
    if st.st_uid != os.getuid():
        raise CredentialsError(f"{where}: belongs to uid {st.st_uid}, not you; tokens must live in a directory "
                               "of your own (unset it to use ~/.config/ptychoflow)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_ISVTX | 0o022):
        raise CredentialsError(f"{where}: is a shared directory (mode {mode:04o}) that others can write to; "
                               "it is left as it is: point it at a directory of your own")
    if mode & 0o077:
        log.warning("token directory %s was readable by others; restricting it to its owner (0700)", directory)
        directory.chmod(DIR_MODE)


class OwnerOnlyJSONTokenStorage(JSONTokenStorage):
    """The SDK's JSON storage, with owner-only permissions enforced rather than assumed.

    The SDK sets a 0177 umask while writing, which protects a *new* file but leaves an
    existing file (copied in, restored from backup) with whatever mode it had. We chmod
    the file after every write and repair a loose file when opened. The directory must be
    the user's own: a shared or foreign one is refused, never chmodded (``_private_directory``).
    """

    def __init__(self, filepath: Path | str, *, namespace: str = "DEFAULT") -> None:
        _private_directory(Path(filepath).parent)
        super().__init__(filepath, namespace=namespace)
        self._enforce_mode()

    def _ensure_containing_dir_exists(self) -> None:
        directory = Path(self.filepath).parent
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        _private_directory(directory)

    def _enforce_mode(self) -> None:
        path = Path(self.filepath)
        if path.is_symlink():
            raise CredentialsError(f"{path}: is a symlink; the token file must be a regular file of your own")
        if path.exists() and stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            log.warning("token file %s was readable by others; restricting it to its owner (0600)", path)
            path.chmod(FILE_MODE)

    def store_token_data_by_resource_server(self, token_data_by_resource_server: Mapping) -> None:  # type: ignore[override]
        super().store_token_data_by_resource_server(token_data_by_resource_server)
        self._enforce_mode()

    def remove_token_data(self, resource_server: str) -> bool:
        removed = super().remove_token_data(resource_server)
        self._enforce_mode()
        return removed


@dataclass(frozen=True)
class Identity:
    """Which credentials will be used, without the secret."""

    kind: str  # "user" | "client"
    client_id: str


def resolve_identity(profile: Profile, prefer: str | None = None) -> Identity:
    """Confidential client from the environment if both variables are set, else the user app.

    ``prefer="user"`` picks the person's app even when the watcher's client is configured
    (``preflight`` checks both).
    """
    env_id, env_secret = os.environ.get(ENV_CLIENT_ID), os.environ.get(ENV_CLIENT_SECRET)
    if env_id and env_secret and prefer != "user":
        return Identity("client", env_id)
    if env_secret and not env_id:
        raise CredentialsError(f"{ENV_CLIENT_SECRET} is set but {ENV_CLIENT_ID} is not; set both for the watcher's client")
    if prefer == "client":
        raise CredentialsError(f"the watcher's client is not configured: set {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET}")
    # PTYCHOFLOW_CLIENT_ID alone may name a native app; with a secret it is the watcher's client
    client_id = profile.globus.client_id or (None if env_secret else env_id)
    if not client_id:
        raise CredentialsError(
            "no Globus client configured: set [globus] client_id in the profile (a native app registered at "
            f"https://app.globus.org/settings/developers), or {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} for a service client"
        )
    return Identity("user", client_id)


def flow_scope(flow_id: str, collection_ids: Iterable[str] = ()) -> Scope:
    """The flow's user scope; with collections, the Transfer data_access consents beneath it.

    Pass only collections that take a data_access consent (``collections.needs_data_access``);
    naming a guest, GCP or High Assurance collection makes Globus Auth reject the login with
    "Unknown Scope".
    """
    scope = globus_sdk.SpecificFlowClient(flow_id).scopes.user
    collections = list(collection_ids)
    if collections:
        transfer = TransferScopes.all.with_optional(True)
        for collection in collections:
            transfer = transfer.with_dependency(GCSCollectionScopes(collection).data_access.with_optional(True))
        scope = scope.with_dependency(transfer)
    return scope


def scope_requirements(flow_ids: Iterable[str] = (), collection_ids: Iterable[str] = ()) -> dict[str, list[Scope]]:
    """Everything ptychoflow uses, keyed by resource server, so one login covers it all."""
    collections = list(collection_ids)
    requirements: dict[str, list[Scope]] = {
        AuthScopes.resource_server: [AuthScopes.openid, AuthScopes.profile, AuthScopes.email],
        FlowsScopes.resource_server: [FlowsScopes.all],
        TransferScopes.resource_server: [TransferScopes.all],
        ComputeScopes.resource_server: [ComputeScopes.all],
    }
    for flow_id in dict.fromkeys(flow_ids):
        requirements[flow_id] = [flow_scope(flow_id, collections)]
    return requirements


def build_app(
    profile: Profile,
    *,
    flow_ids: Iterable[str] = (),
    collection_ids: Iterable[str] = (),
    interactive: bool = False,
    token_storage: TokenStorage | None = None,
    prefer: str | None = None,
) -> globus_sdk.GlobusApp:
    """A ``ClientApp`` (watcher) or ``UserApp`` (person) carrying all of ptychoflow's scopes.

    ``interactive=False`` (everything but ``login``) turns off the SDK's prompt-on-missing-token
    so a cron job or the watcher fails with a message instead of hanging on a prompt.
    """
    identity = resolve_identity(profile, prefer)
    requirements = scope_requirements(flow_ids, collection_ids)
    config_args: dict = {"request_refresh_tokens": True}
    if not interactive:
        config_args["token_validation_error_handler"] = None
    if identity.kind == "client":
        config = globus_sdk.GlobusAppConfig(token_storage=token_storage or MemoryTokenStorage(), **config_args)
        return globus_sdk.ClientApp(
            APP_NAME,
            client_id=identity.client_id,
            client_secret=os.environ[ENV_CLIENT_SECRET],
            scope_requirements=requirements,
            config=config,
        )
    storage = token_storage or OwnerOnlyJSONTokenStorage(token_file(), namespace=identity.client_id)
    config = globus_sdk.GlobusAppConfig(token_storage=storage, **config_args)
    return globus_sdk.UserApp(APP_NAME, client_id=identity.client_id, scope_requirements=requirements, config=config)


def login_command(
    profile: Profile,
    flow_ids: Iterable[str] = (),
    collection_ids: Iterable[str] = (),
    requirements: AuthRequirements | None = None,
) -> str:
    """The exact ``ptychoflow login`` invocation that grants the named consents.

    ``collection_ids`` are the data_access collections; ``requirements`` adds what a
    service's auth-requirements error (GARE) asked for: scopes and session conditions.
    """
    parts = ["ptychoflow", "login"]
    profile_file = profile.root / "ptychoflow.toml"
    if profile.root.resolve() != Path.cwd().resolve():
        parts += ["--profile", str(profile_file)]
    for flow_id in dict.fromkeys(flow_ids):
        parts += ["--flow", flow_id]
    for collection in dict.fromkeys(collection_ids):
        parts += ["--collection", collection]
    if requirements:
        parts += requirements.login_args()
    parts.append("--force")
    return shlex.join(parts)


def profile_collections(profile: Profile) -> list[str]:
    """Collection ids named in the profile (candidates for a data_access consent)."""
    sites = (profile.beamline, profile.hpc, profile.edge)
    return list(dict.fromkeys(site.collection_id for site in sites if site.collection_id))
