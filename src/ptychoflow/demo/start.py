"""The demo's first model: pretrained from the optics' probe guess before scan 1, then shipped
to the edge with the ``deploy_model`` flow, so scan 1 is inferred live as it is acquired."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ptychoflow.backends.base import Backend, RunInfo
from ptychoflow.demo.scenario import DemoOptions
from ptychoflow.fs import atomic_write
from ptychoflow.profile import Profile
from ptychoflow.site import SiteLayout

PROBE_GUESS_FILENAME = "probe_guess.npy"  # in the demo's state dir


def write_probe_guess(options: DemoOptions, layout: SiteLayout) -> Any:
    path = layout.state_dir / PROBE_GUESS_FILENAME

    def write(tmp: Any) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.save would append .npy to the temporary name
            np.save(handle, options.probe_guess())

    return atomic_write(path, write)


def first_model(options: DemoOptions, profile: Profile, layout: SiteLayout, backend: Backend) -> dict[str, Any] | None:
    """Pretrain (or reuse) a model for the guessed beam and activate it on the edge; None when
    the registry already has one (a resumed demo) or pretraining is off."""
    from ptychoflow.flow_inputs import deploy_model_input
    from ptychoflow.nn.start import start_model
    from ptychoflow.nn.options import ContinualOptions
    from ptychoflow.nn.registry import Registry
    from ptychoflow.resources import flow_path

    registry = layout.hpc.registry_dir
    if options.pretrain_s <= 0 or (Registry(registry).db_path.exists() and Registry(registry).best() is not None):
        return None
    policy = profile.policy
    result = start_model(ContinualOptions(
        registry_dir=registry, probe_guess_path=write_probe_guess(options, layout), counts_per_frame=options.simulation.dose,
        model_kind=policy.model, patch_size=policy.patch_size, epochs=10_000, time_limit_s=options.pretrain_s,
        progress=False))
    flow = backend.deploy_flow(flow_path("deploy_model"))
    run = backend.start_run(flow, deploy_model_input(profile, result["best_version"]), label="demo: first model")
    run = _wait(backend, run.run_id, timeout_s=120)
    if run.status.value != "SUCCEEDED":
        raise RuntimeError(f"deploy_model run {run.run_id} {run.status.value}: {run.error}")
    return result


def _wait(backend: Backend, run_id: str, *, timeout_s: float) -> RunInfo:
    deadline = time.monotonic() + timeout_s
    run = backend.get_run(run_id)
    while not run.status.finished and time.monotonic() < deadline:
        time.sleep(0.2)
        run = backend.get_run(run_id)
    return run
