"""The action journal: outcomes survive restarts, starts are counted before the work begins."""

from __future__ import annotations

import pytest

from ptychoflow.errors import InputError
from ptychoflow.flowengine.action_journal import ActionJournal, interrupted_message


def test_outcome_starts_and_forget(tmp_path) -> None:
    journal = ActionJournal(tmp_path / "actions")
    key = "3f2a-run.4"
    assert journal.outcome(key) is None and journal.starts(key) == 0
    with journal.exclusive(key):
        assert journal.begin(key) == 1
    again = ActionJournal(tmp_path / "actions")  # a restarted engine
    assert again.starts(key) == 1 and again.outcome(key) is None  # interrupted: started, never finished
    assert again.begin(key) == 2
    again.finish(key, {"status": "SUCCEEDED", "n": 1})
    assert ActionJournal(tmp_path / "actions").outcome(key) == {"status": "SUCCEEDED", "n": 1}
    again.forget(key)
    assert again.outcome(key) is None and again.starts(key) == 0
    assert not list((tmp_path / "actions").iterdir())


def test_keys_cannot_escape_the_directory(tmp_path) -> None:
    with pytest.raises(InputError, match="action key"):
        ActionJournal(tmp_path).outcome("../../etc/passwd")


def test_the_interruption_message_says_why_it_is_not_rerun() -> None:
    assert "no rerun is allowed" in interrupted_message(1, 0)
    assert "its 1 allowed rerun(s) are used up" in interrupted_message(2, 1)
