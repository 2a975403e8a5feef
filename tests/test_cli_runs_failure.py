"""`runs show` and `runs logs` put the cause first: the failing state, the error type and the
one-line reason (here a ScanError raised inside a remote function and caught by the flow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine_helpers import write_function, write_profile
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flowengine.providers import EngineEnv
from ptychoflow.flowengine.worker import Engine
from ptychoflow.profile import load_profile

CLI = Path(sys.executable).with_name("ptychoflow")
REASON = "ScanError: scan_0003.h5: /entry/data/positions: 4 positions for 5 frames (counts must match)"


def failing_run(tmp_path: Path) -> tuple[Path, str]:
    """A run shaped like the bundled flows: the action fails, Catch -> report -> Fail state."""
    profile_file = write_profile(tmp_path)
    profile = load_profile(profile_file)
    backend = LocalBackend.from_profile(profile)
    source = write_function(tmp_path / "fns", "reconstruct", """
        from ptychoflow.errors import ScanError
        raise ScanError('scan_0003.h5', '/entry/data/positions', '4 positions for 5 frames (counts must match)')
    """)
    function_id = backend.register_function(source, "reconstruct").function_id
    definition = {"StartAt": "Reconstruct", "States": {
        "Reconstruct": {"Type": "Action", "ActionUrl": "https://compute.actions.globus.org/v3", "ResultPath": "$.r",
                        "Parameters": {"endpoint_id": "local-hpc", "tasks": [{"function_id": function_id, "kwargs": {}}]},
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "ReportFailure"}],
                        "Next": "Done"},
        "ReportFailure": {"Type": "ExpressionEval", "Parameters": {"summary.=": "'failed: ' + failure.Error"},
                          "ResultPath": "$.failure_report", "Next": "Failed"},
        "Failed": {"Type": "Fail", "Error": "PtychoflowFlowFailed", "Cause": "A state failed; see failure_report."},
        "Done": {"Type": "Pass", "End": True}}}
    flow_file = tmp_path / "recon.json"
    flow_file.write_text(json.dumps(definition))
    run = backend.start_run(backend.deploy_flow(flow_file), {})
    engine = Engine(EngineEnv.from_profile(profile))
    try:
        assert engine.run_until_finished(run.run_id, 60) == "FAILED"
    finally:
        engine.close()
    return profile_file, run.run_id


def ptychoflow(*args: str) -> str:
    result = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_show_and_logs_put_the_cause_first(tmp_path: Path) -> None:
    profile_file, run_id = failing_run(tmp_path)
    shown = ptychoflow("runs", "show", run_id[:8], "--profile", str(profile_file)).splitlines()
    assert shown[0].startswith(f"run {run_id}  FAILED")
    assert shown[1] == f"failed at Reconstruct: ActionFailedException: {REASON}"
    assert shown[2] == "  then ended: PtychoflowFlowFailed: A state failed; see failure_report."
    assert "Traceback" not in "\n".join(shown) and '{"action_id"' not in "\n".join(shown)

    logged = ptychoflow("runs", "logs", run_id[:8], "--profile", str(profile_file)).splitlines()
    assert logged[0] == f"failed at Reconstruct: ActionFailedException: {REASON}"
    caught = next(line for line in logged if "ErrorCaught" in line)
    assert caught.endswith(f"Reconstruct: ActionFailedException: {REASON} (caught, going to ReportFailure)")

    document = json.loads(ptychoflow("runs", "show", run_id[:8], "--json", "--profile", str(profile_file)))
    failure = document["failure"]
    assert (failure["state"], failure["error"], failure["message"]) == ("Reconstruct", "ActionFailedException", REASON)
    assert "Traceback (most recent call last)" in json.loads(failure["cause"])["details"]["exception"]
