"""``GlobusBackend``: the Backend verbs on Globus Flows, Compute and Transfer.

Clients are built lazily from one ``GlobusApp`` (so one login covers every service), each
with the SDK's retry policy. Every SDK failure leaves through :func:`explained` as a single
line; the backend never prompts for a login on its own.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import globus_sdk

from ptychoflow.backends.base import Backend, DeployedFlow, RegisteredFunction, RunInfo, RunStatus
from ptychoflow.function_registry import FunctionRegistry, bundled_functions
from ptychoflow.profile import Profile

from . import compute, flows, runs, transfer
from .auth import build_app, login_command, profile_collections
from .errors import explained
from .retry import PollBackoff, poll_until, sdk_retry_config

log = logging.getLogger(__name__)


class GlobusBackend(Backend):
    """Runs flows on the real Globus services described by a profile."""

    name = "globus"

    def __init__(self, profile: Profile, *, app: globus_sdk.GlobusApp | None = None) -> None:
        self.profile = profile
        self.flow_state = flows.FlowState(profile.state_path)
        self.registry = FunctionRegistry(profile.state_path)
        self._app = app
        self._flow_clients: dict[str, globus_sdk.SpecificFlowClient] = {}

    # -- clients -------------------------------------------------------------------------
    def known_flow_ids(self) -> list[str]:
        pinned = [self.profile.globus.flow_id] if self.profile.globus.flow_id else []
        return list(dict.fromkeys(pinned + self.flow_state.flow_ids()))

    @property
    def app(self) -> globus_sdk.GlobusApp:
        if self._app is None:
            self._app = build_app(self.profile, flow_ids=self.known_flow_ids())
        return self._app

    @cached_property
    def flows_client(self) -> globus_sdk.FlowsClient:
        return globus_sdk.FlowsClient(app=self.app, retry_config=sdk_retry_config())

    def flow_client(self, flow_id: str) -> globus_sdk.SpecificFlowClient:
        """One client per flow: each adds its flow's scope to the app once, not per call."""
        if flow_id not in self._flow_clients:
            self._flow_clients[flow_id] = globus_sdk.SpecificFlowClient(flow_id, app=self.app, retry_config=sdk_retry_config())
        return self._flow_clients[flow_id]

    @cached_property
    def transfer_client(self) -> globus_sdk.TransferClient:
        return globus_sdk.TransferClient(app=self.app, retry_config=sdk_retry_config())

    @cached_property
    def compute_client(self) -> Any:
        from globus_compute_sdk import Client

        return Client(app=self.app, do_version_check=False)

    def fix_command(self, flow_ids: list[str] | None = None) -> str:
        return login_command(self.profile, flow_ids or self.known_flow_ids(), profile_collections(self.profile))

    def _explained(self, action: str, flow_ids: list[str] | None = None):
        return explained(self.profile, flow_ids=flow_ids or self.known_flow_ids(), action=action)

    # -- flows ---------------------------------------------------------------------------
    def deploy_flow(self, definition_path: Path) -> DeployedFlow:
        source = flows.load_flow_source(definition_path)
        with self._explained(f"deploy {source.name}"):
            return flows.deploy_flow(self.flows_client, source, self.profile, self.flow_state)

    # -- functions -----------------------------------------------------------------------
    def register_function(self, source_path: Path, name: str, *, force: bool = False) -> RegisteredFunction:
        with self._explained(f"register {name}"):
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
        with self._explained("check endpoints"):
            return compute.check_endpoints(self.compute_client, [self.profile.hpc.endpoint_id, self.profile.edge.endpoint_id])

    def endpoint_status(self, endpoint_id: str) -> dict[str, Any]:
        with self._explained(f"status of endpoint {endpoint_id}"):
            return self.compute_client.get_endpoint_status(endpoint_id)

    def collection_status(self, collection_id: str) -> dict[str, Any]:
        with self._explained(f"status of collection {collection_id}"):
            return transfer.collection_status(self.transfer_client, collection_id)

    def transfer_task(self, task_id: str) -> dict[str, Any]:
        with self._explained(f"transfer task {task_id}"):
            return transfer.task_status(self.transfer_client, task_id)

    # -- runs ----------------------------------------------------------------------------
    def run_roles(self) -> dict[str, list[str]]:
        """Run monitors and managers: the profile's group, so colleagues can watch and cancel."""
        if not self.profile.globus.group_id:
            return {}
        principal = [flows.group_urn(self.profile.globus.group_id)]
        return {"run_monitors": principal, "run_managers": principal}

    def start_run(
        self, flow: DeployedFlow, body: dict[str, Any], *, label: str = "", tags: list[str] | None = None
    ) -> RunInfo:
        client = self.flow_client(flow.flow_id)
        with self._explained(f"start {flow.title}", [flow.flow_id]):
            doc = client.run_flow(
                body,
                label=runs.truncate_label(label or flow.title),
                tags=runs.clean_tags(tags),
                **self.run_roles(),
            ).data
        return runs.to_run_info(doc, fix_command=self.fix_command([flow.flow_id]))

    def get_run_log(self, run_id: str) -> list[dict[str, Any]]:
        with self._explained(f"log of run {run_id}"):
            return list(self.flows_client.paginated.get_run_logs(run_id).items())

    def get_run(self, run_id: str) -> RunInfo:
        with self._explained(f"run {run_id}"):
            doc = self.flows_client.get_run(run_id).data
        return runs.to_run_info(doc, self.get_run_log(run_id), fix_command=self.fix_command([doc.get("flow_id", "")]))

    def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        """Newest first; only runs of ptychoflow's flows once any is deployed or pinned."""
        found: list[RunInfo] = []
        flow_ids = self.known_flow_ids()
        filters: dict[str, Any] = {"filter_flow_id": flow_ids} if flow_ids else {}
        with self._explained("list runs"):
            pages = self.flows_client.paginated.list_runs(query_params={"orderby": "start_time DESC"}, **filters)
            for doc in pages.items():
                found.append(runs.to_run_info(doc, fix_command=self.fix_command()))
                if len(found) >= limit:
                    break
        return found

    def cancel_run(self, run_id: str) -> RunInfo:
        with self._explained(f"cancel run {run_id}"):
            doc = self.flows_client.cancel_run(run_id).data
        return runs.to_run_info(doc)

    def resume_run(self, run_id: str) -> RunInfo:
        """Resume an INACTIVE run (after ``ptychoflow login`` granted the missing consent)."""
        with self._explained(f"run {run_id}"):
            flow_id = self.flows_client.get_run(run_id)["flow_id"]
        with self._explained(f"resume run {run_id}", [flow_id]):
            doc = self.flow_client(flow_id).resume_run(run_id).data
        return runs.to_run_info(doc, fix_command=self.fix_command([flow_id]))

    def wait_run(self, run_id: str, *, timeout: float | None = None, backoff: PollBackoff | None = None, **kw: Any) -> RunInfo:
        """Poll with a growing interval until the run finishes, goes INACTIVE, or ``timeout`` passes.

        Probes fetch only the run document; the log (for the timeline) is read once at the end.
        """

        def settled() -> bool:
            with self._explained(f"run {run_id}"):
                status = runs.run_status(self.flows_client.get_run(run_id).data)
            return status.finished or status is RunStatus.INACTIVE

        poll_until(settled, timeout=timeout, backoff=backoff, **kw)
        return self.get_run(run_id)
