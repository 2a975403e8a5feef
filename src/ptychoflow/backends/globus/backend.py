"""``GlobusBackend``: the Backend verbs on Globus Flows, Compute and Transfer.

Clients are built lazily from one ``GlobusApp`` (so one login covers every service), each
with the SDK's retry policy. Every SDK failure leaves through :func:`explained` as a single
line; the backend never prompts for a login on its own.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import globus_sdk

from ptychoflow.backends.base import Backend, DeployedFlow, RegisteredFunction, RunInfo, RunStatus
from ptychoflow.backends.polling import PollBackoff
from ptychoflow.errors import CredentialsError, PtychoflowError
from ptychoflow.function_registry import FunctionRegistry, bundled_functions
from ptychoflow.profile import Profile

from . import compute, flows, runs, transfer, validation
from .auth import build_app, flow_scope, profile_collections, resolve_identity
from .collections import CollectionTypes
from .errors import explained, remedy
from .retry import sdk_retry_config

log = logging.getLogger(__name__)


class GlobusBackend(Backend):
    """Runs flows on the real Globus services described by a profile."""

    name = "globus"

    def __init__(self, profile: Profile, *, app: globus_sdk.GlobusApp | None = None, prefer: str | None = None) -> None:
        """``prefer``: "user" or "client" to act as that identity when both are configured."""
        self.profile = profile
        self.prefer = prefer
        self.flow_state = flows.FlowState(profile.state_path)
        self.registry = FunctionRegistry(profile.state_path)
        self.collection_types = CollectionTypes(profile.state_path)
        self._app = app
        self._flow_clients: dict[str, globus_sdk.SpecificFlowClient] = {}

    # -- clients -------------------------------------------------------------------------
    def known_flow_ids(self) -> list[str]:
        pinned = [self.profile.globus.flow_id] if self.profile.globus.flow_id else []
        return list(dict.fromkeys(pinned + self.flow_state.flow_ids()))

    def data_access_collections(self) -> list[str]:
        """The profile's collections known (from Transfer) to take a data_access consent."""
        return self.collection_types.data_access(profile_collections(self.profile))

    @property
    def app(self) -> globus_sdk.GlobusApp:
        if self._app is None:
            self._app = build_app(self.profile, flow_ids=self.known_flow_ids(), collection_ids=self.data_access_collections(),
                                  prefer=self.prefer)
        return self._app

    def learn_collections(self) -> list[str]:
        """Ask Transfer about profile collections not seen before; returns the data_access ones.

        Called before a flow client is made, so that the app (the watcher's client above
        all) asks for the data_access consents of mapped collections, and only those.
        A collection Transfer cannot describe is left out and looked up again next time.
        """
        before = self.data_access_collections()
        for collection_id in self.collection_types.unknown(profile_collections(self.profile)):
            try:
                self.collection_status(collection_id)
            except PtychoflowError as exc:
                log.warning("cannot tell whether collection %s needs a data_access consent: %s", collection_id, exc)
        needed = self.data_access_collections()
        if self._app is not None and needed != before:
            self._app.add_scope_requirements({fid: [flow_scope(fid, needed)] for fid in self.known_flow_ids()})
        return needed

    @cached_property
    def flows_client(self) -> globus_sdk.FlowsClient:
        return globus_sdk.FlowsClient(app=self.app, retry_config=sdk_retry_config())

    def flow_client(self, flow_id: str) -> globus_sdk.SpecificFlowClient:
        """One client per flow: each adds its flow's scope, with the data_access consents
        of the profile's mapped collections beneath it, to the app once, not per call."""
        if flow_id not in self._flow_clients:
            needed = self.learn_collections()
            self.app.add_scope_requirements({flow_id: [flow_scope(flow_id, needed)]})
            self._flow_clients[flow_id] = globus_sdk.SpecificFlowClient(flow_id, app=self.app, retry_config=sdk_retry_config())
        return self._flow_clients[flow_id]

    @cached_property
    def transfer_client(self) -> globus_sdk.TransferClient:
        return globus_sdk.TransferClient(app=self.app, retry_config=sdk_retry_config())

    @cached_property
    def compute_client(self) -> Any:
        """Globus Compute's client, given an authorizer rather than the app: with an app it
        answers a consent error by starting an interactive login, which would hang the
        watcher; this way the error reaches :func:`explained` and becomes one line."""
        from globus_compute_sdk import Client
        from globus_sdk.scopes import ComputeScopes

        return Client(authorizer=self.app.get_authorizer(ComputeScopes.resource_server), do_version_check=False)

    def inactive_remedy(self, doc: dict[str, Any]) -> str:
        """How to meet what a run document's INACTIVE details ask for (login line or client grant)."""
        flow_ids = [doc["flow_id"]] if doc.get("flow_id") else self.known_flow_ids()
        return remedy(self.profile, flow_ids, self.data_access_collections(), runs.inactive_requirements(doc))

    def explaining(self, action: str, flow_ids: list[str] | None = None):
        """Context manager: an SDK failure inside becomes one line saying what fixes it."""
        return explained(self.profile, flow_ids=flow_ids or self.known_flow_ids(),
                         collection_ids=self.data_access_collections(), action=action)

    # -- flows ---------------------------------------------------------------------------
    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        source = flows.load_flow_source(definition_path)
        with self.explaining(f"deploy {source.name}"):
            return flows.deploy_flow(self.flows_client, source, self.profile, self.flow_state)

    def validate_flow(self, definition_path: Path) -> list[str]:
        """``FlowsClient.validate_flow``: the service's own check; returns the scopes it needs."""
        source = flows.load_flow_source(definition_path)
        with self.explaining(f"validate {source.name}"):
            return validation.validate_flow(self.flows_client, source)

    def validate_run(self, flow: DeployedFlow, body: dict[str, Any]) -> None:
        """``SpecificFlowClient.validate_run``: would the service start a run with this input?"""
        client = self.flow_client(flow.flow_id)
        with self.explaining(f"validate a run of {flow.title}", [flow.flow_id]):
            validation.validate_run(client, flow, body)

    # -- functions -----------------------------------------------------------------------
    def register_function(self, source_path: Path, name: str, *, force: bool = False) -> RegisteredFunction:
        with self.explaining(f"register {name}"):
            return compute.register_function(
                self.compute_client, self.registry, source_path, name, group_id=self.profile.globus.group_id, force=force
            )

    def register_all(self, functions: dict[str, Path] | None = None, *, force: bool = False) -> list[RegisteredFunction]:
        """Register every bundled function (or the given ones), then check endpoint Pythons."""
        chosen = bundled_functions() if functions is None else functions
        done = [self.register_function(path, name, force=force) for name, path in chosen.items()]
        self.check_endpoints()
        return done

    def check_endpoints(self) -> list[str]:
        """Python-version mismatch warnings for the profile's compute endpoints."""
        with self.explaining("check endpoints"):
            return compute.check_endpoints(self.compute_client, [self.profile.hpc.endpoint_id, self.profile.edge.endpoint_id])

    def endpoint_status(self, endpoint_id: str) -> dict[str, Any]:
        with self.explaining(f"status of endpoint {endpoint_id}"):
            return self.compute_client.get_endpoint_status(endpoint_id)

    def collection_status(self, collection_id: str) -> dict[str, Any]:
        """A collection's summary; its entity type is remembered for data_access decisions."""
        with self.explaining(f"status of collection {collection_id}"):
            status = transfer.collection_status(self.transfer_client, collection_id)
        self.collection_types.record(collection_id, status)
        return status

    def transfer_task(self, task_id: str) -> dict[str, Any]:
        with self.explaining(f"transfer task {task_id}"):
            return transfer.task_status(self.transfer_client, task_id)

    # -- runs ----------------------------------------------------------------------------
    def run_roles(self) -> dict[str, list[str]]:
        """Run monitors and managers: the profile's group, so colleagues can watch and cancel."""
        if not self.profile.globus.group_id:
            return {}
        principal = [flows.group_urn(self.profile.globus.group_id)]
        return {"run_monitors": principal, "run_managers": principal}

    def start_run(
        self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "", tags: list[str] | None = None,
        notify_on: Sequence[str] = (),
    ) -> RunInfo:
        client = self.flow_client(flow.flow_id)
        extra: dict[str, Any] = {}
        if notify_on:
            extra["activity_notification_policy"] = globus_sdk.RunActivityNotificationPolicy(status=list(notify_on))
        with self.explaining(f"start {flow.title}", [flow.flow_id]):
            doc = client.run_flow(
                body,
                label=runs.truncate_label(label or flow.title),
                tags=runs.clean_tags(tags),
                **self.run_roles(),
                **extra,
            ).data
        return runs.to_run_info(doc, remedy=self.inactive_remedy(doc))

    def get_run_log(self, run_id: str) -> list[dict[str, Any]]:
        with self.explaining(f"log of run {run_id}"):
            return list(self.flows_client.paginated.get_run_logs(run_id).items())

    def get_run(self, run_id: str) -> RunInfo:
        with self.explaining(f"run {run_id}"):
            doc = self.flows_client.get_run(run_id).data
        return runs.to_run_info(doc, self.get_run_log(run_id), remedy=self.inactive_remedy(doc))

    def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        """Newest first; only runs of ptychoflow's flows once any is deployed or pinned."""
        found: list[RunInfo] = []
        flow_ids = self.known_flow_ids()
        filters: dict[str, Any] = {"filter_flow_id": flow_ids} if flow_ids else {}
        with self.explaining("list runs"):
            pages = self.flows_client.paginated.list_runs(query_params={"orderby": "start_time DESC"}, **filters)
            for doc in pages.items():
                found.append(runs.to_run_info(doc, remedy=self.inactive_remedy(doc)))
                if len(found) >= limit:
                    break
        return found

    def cancel_run(self, run_id: str) -> RunInfo:
        with self.explaining(f"cancel run {run_id}"):
            doc = self.flows_client.cancel_run(run_id).data
        return runs.to_run_info(doc)

    def resume_run(self, run_id: str, *, check: bool = True) -> RunInfo:
        """Resume an INACTIVE run, once what its details ask for (a GARE) is granted.

        As ``globus flows run resume`` does: a missing consent, or any session condition,
        stops here with the exact ``ptychoflow login`` line; ``check=False`` resumes anyway
        (after a session update the service is the judge).
        """
        with self.explaining(f"run {run_id}"):
            doc = self.flows_client.get_run(run_id).data
        flow_id = doc["flow_id"]
        requirements = runs.inactive_requirements(doc)
        if check and requirements and (requirements.session or not self.has_consents(requirements.scopes)):
            raise CredentialsError(
                f"run {run_id} is INACTIVE until Globus Auth gets {requirements.describe()}; "
                f"{remedy(self.profile, [flow_id], self.data_access_collections(), requirements)}, "
                f"then `ptychoflow runs resume {run_id}" + (" --no-check`" if requirements.session else "`")
            )
        with self.explaining(f"resume run {run_id}", [flow_id]):
            doc = self.flow_client(flow_id).resume_run(run_id).data
        return runs.to_run_info(doc, remedy=self.inactive_remedy(doc))

    def has_consents(self, scopes: tuple[str, ...] | list[str]) -> bool:
        """Whether the logged-in person already consented to ``scopes`` (Auth's consent forest).

        The watcher's client has no consents to look up: it answers True and lets the
        service decide.
        """
        if not scopes or isinstance(self.app, globus_sdk.ClientApp):
            return True
        with self.explaining("read your Globus consents"):
            auth = globus_sdk.AuthClient(app=self.app, retry_config=sdk_retry_config())
            identity_id = self.app.token_storage.identity_id or auth.userinfo()["sub"]
            forest = auth.get_consents(identity_id).to_forest()
        return forest.meets_scope_requirements(list(scopes))

    def poll_backoff(self) -> PollBackoff:
        """Runs last minutes to hours: 2 s at first, growing to one request a minute."""
        return PollBackoff()

    def run_status(self, run_id: str) -> RunStatus:
        """The run document alone (``get_run`` reads the log too, for the timeline)."""
        with self.explaining(f"run {run_id}"):
            return runs.run_status(self.flows_client.get_run(run_id).data)

    # -- preflight -----------------------------------------------------------------------
    def acting_as(self, prefer: str) -> "GlobusBackend | None":
        """This deployment seen by the person ("user") or the watcher's client ("client"),
        or None when that identity is not configured here."""
        try:
            resolve_identity(self.profile, prefer)
        except CredentialsError:
            return None
        return GlobusBackend(self.profile, prefer=prefer)

    def preflight(self, *, identity_mapping: Path | None = None, **_: Any) -> list[Any]:
        """Every preflight check (:mod:`.preflight`), for the person and the watcher's client."""
        from ptychoflow.resources import bundled_flows

        from .preflight import run_preflight

        return run_preflight(self.acting_as("user"), self.acting_as("client"), flow_paths=bundled_flows(),
                             functions=bundled_functions(), identity_mapping=identity_mapping)
