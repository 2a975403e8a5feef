"""One-line failure reasons dug out of action status documents and tracebacks."""

from __future__ import annotations

import json

import pytest

from ptychoflow.flowengine.failure import describe, reason

TRACEBACK = """Traceback (most recent call last):
  File "/site/functions/reconstruct.py", line 40, in reconstruct
    scan = read_scan(scan_file)
  File "/site/src/ptychoflow/scan/format.py", line 88, in read_scan
    raise ScanError(path, "/entry/data/positions", "4 positions for 5 frames (counts must match)")
ptychoflow.errors.ScanError: scan_0003.h5: /entry/data/positions: 4 positions for 5 frames (counts must match)
"""


def status(details: dict) -> str:
    return json.dumps({"action_id": "r.3", "status": "FAILED", "display_status": "FAILED", "details": details,
                       "start_time": "t", "completion_time": "t"})


@pytest.mark.parametrize("cause, expected", [
    (status({"results": [{"task_id": "a", "status": "FAILED", "exception": TRACEBACK, "error": "ScanError: ..."}],
             "exception": TRACEBACK, "description": "ScanError: ..."}),
     "ScanError: scan_0003.h5: /entry/data/positions: 4 positions for 5 frames (counts must match)"),
    (status({"status": "FAILED", "nice_status": "FILE_NOT_FOUND",
             "fatal_error": {"code": "FILE_NOT_FOUND", "description": "/~/scan_9.h5: no such file on beamline"},
             "description": "/~/scan_9.h5: no such file on beamline"}),
     "/~/scan_9.h5: no such file on beamline"),
    (status({"code": "NotFound"}), "NotFound"),
    ("path $.absent not found in the state", "path $.absent not found in the state"),
    (TRACEBACK, "ScanError: scan_0003.h5: /entry/data/positions: 4 positions for 5 frames (counts must match)"),
    ("first line\nsecond line", "first line"),
    ("bell\x07 and escape\x1b[31m", "bell\\x07 and escape\\x1b[31m"),
])
def test_reason_is_the_one_line_that_says_why(cause: str, expected: str) -> None:
    assert reason(cause) == expected


def test_long_reasons_are_clipped_and_the_full_cause_is_kept() -> None:
    failure = describe("ActionFailedException", status({"description": "x" * 1000}), "Reconstruct")
    assert len(failure.message) == 300 and failure.message.endswith("…")
    assert json.loads(failure.cause)["details"]["description"] == "x" * 1000
    assert failure.line().startswith("Reconstruct: ActionFailedException: xxx")
