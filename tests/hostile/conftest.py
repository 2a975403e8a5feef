"""Prints the fuzz suite's summary line (see hostile_support) at the end of every run that
collected hostile cases, with what the checks measured."""

from __future__ import annotations

from pathlib import Path

import pytest

import hostile_support

HERE = Path(__file__).resolve().parent
_results: dict[str, str] = {}
_root: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    _root.append(config.rootpath)  # report paths are relative to it (cases may chdir)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not (_root[0] / report.fspath).resolve().is_relative_to(HERE):
        return
    if report.when == "call" or report.outcome != "passed":  # setup/teardown failures and skips count too
        _results.setdefault(report.nodeid, report.outcome)
        if report.outcome == "failed":
            _results[report.nodeid] = "failed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = {node: outcome for node, outcome in _results.items() if outcome != "skipped"}
    if ran:
        passed = sum(outcome == "passed" for outcome in ran.values())
        terminalreporter.write_sep("=", hostile_support.summary_line(len(ran), passed))
