"""Execute the states of a run, committing every transition before the next step.

``Interpreter.advance(run_id)`` runs a run forward until it finishes or must wait (an
action in flight, a Wait state) and returns when it next wants attention. All progress
lives in the store, so any interpreter (a restarted worker) can pick a run up again:

  - an Action is recorded as started, with its idempotency key and request body, *before*
    it is submitted; on resume an unfinished action is re-submitted under the same key and
    the provider returns the stored result of one that finished (it never runs twice), and
    decides by its own rules about one that was cut short (``action_journal``);
  - a finished action's result, the new state document and the next state are committed
    in one transaction.

No state can leave a run hanging: every error inside a state ends it with a named error
(``States.Runtime`` for the unexpected ones), and the ``limits`` bound what a run may use.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from ptychoflow.flowengine.choice import choose, parse_timestamp
from ptychoflow.flowengine.definition import action_url
from ptychoflow.flowengine.errors import StateError, runtime_error
from ptychoflow.flowengine.failure import describe
from ptychoflow.flowengine.limits import DEFAULT_LIMITS, LIMIT_ERRORS, UNCATCHABLE_ERRORS, RunLimits, \
    check_state_size, transition_limit_error
from ptychoflow.flowengine.parameters import redact, render, scope_with_context, select
from ptychoflow.flowengine.paths import get_path, set_path
from ptychoflow.flowengine.providers.base import ActionUnableToRun
from ptychoflow.flowengine.providers.registry import Providers
from ptychoflow.flowengine.store import RunRow, StepRow, Store

log = logging.getLogger(__name__)

DEFAULT_WAIT_TIME = 300  # seconds, the service's default Action WaitTime
_MAX_STEPS_PER_ADVANCE = 1000  # let other runs (and cancellations) get a turn


class _Wait(Exception):
    """Internal: the run cannot progress before ``until``."""

    def __init__(self, until: float) -> None:
        self.until = until


class Interpreter:
    """Moves runs through their flow definitions; owns no state beyond caches."""

    def __init__(self, store: Store, providers: Providers, *, username: str = "local",
                 limits: RunLimits = DEFAULT_LIMITS) -> None:
        self.store = store
        self.providers = providers
        self.username = username
        self.limits = limits
        self._definitions: dict[str, dict[str, Any]] = {}
        self.in_flight: dict[str, tuple[str, str]] = {}  # run_id -> (ActionUrl, action key)
        self._finished_actions: list[tuple[Any, str]] = []

    # --- public ----------------------------------------------------------------------------
    def advance(self, run_id: str) -> float | None:
        """Progress one run; returns the time it next needs attention (None: finished)."""
        run = self.store.get_run(run_id)
        if run is None or run.status != "ACTIVE":
            return None
        definition = self._definition(run.flow_id)
        username = run.username or self.username
        user_id = f"urn:ptychoflow:local:{username}"
        context = {"run_id": run.run_id, "flow_id": run.flow_id, "username": username, "email": "",
                   "user_id": user_id, "identities": [user_id], "label": run.label, "tags": run.tags}
        for _ in range(_MAX_STEPS_PER_ADVANCE):
            if run.current_state is None or run.status != "ACTIVE":
                return None
            state = definition["States"][run.current_state]
            open_step = self._open_step(run)
            try:
                if open_step is None:
                    self._check_limits(run)
                self._execute(run, state, open_step, context)
            except _Wait as wait:
                return wait.until
            except StateError as error:
                self._handle_error(run, state, error)
            except sqlite3.Error:
                raise  # the store itself (locked, disk full): the worker retries; the run is intact
            except Exception as exc:  # anything else must end the state, never leave the run hanging
                log.exception("run %s: state %s: unexpected error", run.run_id, run.current_state)
                self._handle_error(run, state, runtime_error(f"{type(exc).__name__}: {exc}"))
            self._release_finished()
        return time.time()

    def _check_limits(self, run: RunRow) -> None:
        """Before a state is entered: the transition count, and (first state only) the input size."""
        if run.step_seq >= self.limits.max_transitions:
            raise transition_limit_error(self.limits)
        if run.step_seq == 0:
            check_state_size(run.document, self.limits, "the run input")

    def _release_finished(self) -> None:
        """Let providers drop finished actions, strictly after their outcome was committed
        (a compute task's stored result must outlive any crash before that commit)."""
        while self._finished_actions:
            provider, key = self._finished_actions.pop()
            provider.release(key)

    # --- helpers ---------------------------------------------------------------------------
    def _definition(self, flow_id: str) -> dict[str, Any]:
        if flow_id not in self._definitions:
            flow = self.store.get_flow(flow_id)
            if flow is None:
                raise KeyError(f"flow {flow_id} is not in the store")
            self._definitions[flow_id] = flow["definition"]
        return self._definitions[flow_id]

    def _open_step(self, run: RunRow) -> StepRow | None:
        if run.step_seq == 0:
            return None
        step = self.store.get_step(run.run_id, run.step_seq)
        if step and step.status == "ACTIVE" and step.name == run.current_state:
            return step
        return None

    def _execute(self, run: RunRow, state: dict[str, Any], step: StepRow | None, context: dict[str, Any]) -> None:
        kind = state["Type"]
        if kind == "Action":
            self._action(run, state, step, context)
        elif kind == "Wait":
            self._wait(run, state, step)
        elif kind == "Fail":
            self._fail(run, state, context)
        else:
            self._instant(run, state, context)

    def _instant(self, run: RunRow, state: dict[str, Any], context: dict[str, Any]) -> None:
        """Pass, ExpressionEval and Choice: compute and commit in one transaction.

        The step records only what the state produced (its result), not the whole state again:
        the run's state lives once, in the run row.
        """
        document = run.document
        if state["Type"] == "Choice":
            next_state = choose(state, scope_with_context(document, context))
            self._commit_transition(run, state, None, document, next_state, step_output={"next": next_state})
            return
        if "Result" in state:  # States Language Pass: a literal result
            value = state["Result"]
        elif "Parameters" in state:
            value = render(state["Parameters"], document, context, self.limits)
        elif "InputPath" in state:
            value = select(document, context, state["InputPath"])
        else:
            value = document
        new_document = set_path(document, state.get("ResultPath", "$"), value)
        self._commit_transition(run, state, None, new_document, state.get("Next"), step_output=value)

    def _commit_transition(self, run: RunRow, state: dict[str, Any], step: StepRow | None, document: Any,
                           next_state: str | None, *, step_output: Any, action_status: Any = None) -> None:
        """Close the state's step and move the run on (or finish it) atomically."""
        name = run.current_state
        end = state.get("End", False) or next_state is None
        check_state_size(document, self.limits, f"the state after {name}")
        with self.store.transaction() as db:
            if not self._still_active(db, run):
                return
            seq = step.seq if step else self.store.open_step(db, run, name, state["Type"], None)
            self.store.close_step(db, run.run_id, seq, "SUCCEEDED", output=step_output, action_status=action_status)
            if end:
                self.store.move(db, run.run_id, document, None)
                self.store.finish_run(db, run.run_id, "SUCCEEDED", output=document)
                self.store.event(db, run.run_id, "FlowSucceeded", "The flow run reached a successful end",
                                 {"output": document})
            else:
                self.store.move(db, run.run_id, document, next_state)
                self.store.event(db, run.run_id, f"{state['Type']}Completed", f"State {name} completed",
                                 {"state_name": name, "next": next_state})
        run.document, run.current_state = document, (None if end else next_state)
        if end:
            run.status = "SUCCEEDED"

    @staticmethod
    def _still_active(db: Any, run: RunRow) -> bool:
        """False (and the run's new status noted) when it was cancelled meanwhile."""
        status = db.execute("SELECT status FROM runs WHERE run_id=?", (run.run_id,)).fetchone()[0]
        run.status = status
        return status == "ACTIVE"

    # --- Wait -------------------------------------------------------------------------------
    def _wait(self, run: RunRow, state: dict[str, Any], step: StepRow | None) -> None:
        if step is None:
            until = self._wait_until(run.document, state)
            with self.store.transaction() as db:
                self.store.open_step(db, run, run.current_state, "Wait", None, deadline=until)
                self.store.event(db, run.run_id, "WaitStarted", f"Waiting until {until}",
                                 {"state_name": run.current_state})
            raise _Wait(until)
        if time.time() < (step.deadline or 0):
            raise _Wait(step.deadline or 0)
        self._commit_transition(run, state, step, run.document, state.get("Next"), step_output=None)

    @staticmethod
    def _wait_until(document: Any, state: dict[str, Any]) -> float:
        if "Seconds" in state or "SecondsPath" in state:
            seconds = state["Seconds"] if "Seconds" in state else get_path(document, state["SecondsPath"])
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                raise runtime_error(f"Wait: SecondsPath gave {seconds!r}, not a non-negative number")
            return time.time() + seconds
        stamp = state["Timestamp"] if "Timestamp" in state else get_path(document, state["TimestampPath"])
        moment = parse_timestamp(stamp)
        if moment is None:
            raise runtime_error(f"Wait: {stamp!r} is not an ISO 8601 timestamp")
        return moment.timestamp()

    # --- Fail -------------------------------------------------------------------------------
    def _fail(self, run: RunRow, state: dict[str, Any], context: dict[str, Any]) -> None:
        name = self._fail_field(run, state, "Error", context) or "States.Fail"
        cause = self._fail_field(run, state, "Cause", context) or ""
        error = f"{name}: {cause}".rstrip(": ")
        with self.store.transaction() as db:
            seq = self.store.open_step(db, run, run.current_state, "Fail", None)
            self.store.close_step(db, run.run_id, seq, "FAILED", error=error)
            self.store.finish_run(db, run.run_id, "FAILED", output=run.document, error=error)
            self.store.event(db, run.run_id, "FlowFailed", error, {
                "state_name": run.current_state, "error": name, "cause": cause, "fail_state": True})
        run.status = "FAILED"

    @staticmethod
    def _fail_field(run: RunRow, state: dict[str, Any], field: str, context: dict[str, Any]) -> str | None:
        """``Error``/``Cause``, or the string at ``ErrorPath``/``CausePath`` (anything else: States.Runtime)."""
        if f"{field}Path" not in state:
            return state.get(field)
        value = select(run.document, context, state[f"{field}Path"])
        if not isinstance(value, str):
            raise runtime_error(f"{field}Path {state[f'{field}Path']} gave {json.dumps(value)[:80]}, not a string")
        return value

    # --- Action -----------------------------------------------------------------------------
    def _action(self, run: RunRow, state: dict[str, Any], step: StepRow | None, context: dict[str, Any]) -> None:
        url = action_url(state)
        if url is None:
            raise ActionUnableToRun("a RegisteredAPI Handler needs the Globus Flows service; the local engine "
                                    "calls action providers by URL")
        if step is None:
            if "Parameters" in state:
                body = render(state["Parameters"], run.document, context, self.limits)
            elif "InputPath" in state:
                body = select(run.document, context, state["InputPath"])
            else:
                body = run.document
            check_state_size(body, self.limits, f"the request body of {run.current_state}")
            key = f"{run.run_id}.{run.step_seq + 1}"
            deadline = time.time() + state.get("WaitTime", DEFAULT_WAIT_TIME)
            with self.store.transaction() as db:  # "started" is durable before submission
                self.store.open_step(db, run, run.current_state, "Action", None, action_url=url,
                                     action_key=key, action_body=body, deadline=deadline)
                self.store.event(db, run.run_id, "ActionStarted", f"State {run.current_state} started {url}",
                                 {"state_name": run.current_state, "action_key": key,
                                  "parameters": redact(state.get("Parameters"), body)})
            step = self.store.get_step(run.run_id, run.step_seq)
            assert step is not None
        provider = self.providers.for_url(url)
        key = step.action_key or ""
        status = provider.status(key)
        resubmitted = status is None  # first submission, or again after an engine restart
        if status is None:
            status = self._submit(provider, key, step.action_body)
        self.in_flight[run.run_id] = (url, key)
        if status["status"] not in ("SUCCEEDED", "FAILED"):
            now = time.time()
            # After a restart give a re-submitted action one poll to return its stored result
            # before WaitTime (counted from the first submission) can time it out.
            if not resubmitted and step.deadline is not None and now >= step.deadline:
                provider.cancel(key)
                self.in_flight.pop(run.run_id, None)
                self._finished_actions.append((provider, key))
                status["description"] = (f"action did not complete within WaitTime "
                                         f"{state.get('WaitTime', DEFAULT_WAIT_TIME)} s")
                raise StateError("ActionTimeout", json.dumps(status, default=str))
            elapsed = now - step.started
            delay = 0.002 if elapsed < 0.05 else 0.02 if elapsed < 1 else 0.2 if elapsed < 30 else 1.0
            raise _Wait(min(now + delay, step.deadline or now))
        self.in_flight.pop(run.run_id, None)
        self._finished_actions.append((provider, key))  # released once the outcome is committed
        if status["status"] == "FAILED" and state.get("ExceptionOnActionFailure", True):
            raise StateError("ActionFailedException", json.dumps(status, default=str))
        document = set_path(run.document, state.get("ResultPath", "$"), status)
        self._commit_transition(run, state, step, document, state.get("Next"), step_output=status,
                                action_status=status)

    @staticmethod
    def _submit(provider: Any, key: str, body: Any) -> dict[str, Any]:
        """``provider.run``; a provider that breaks instead of refusing is ActionUnableToRun."""
        try:
            return provider.run(key, body)
        except StateError:
            raise
        except Exception as exc:
            log.exception("action %s: the provider failed to start it", key)
            raise ActionUnableToRun(f"the provider could not start the action: {type(exc).__name__}: {exc}") from None

    # --- errors -----------------------------------------------------------------------------
    def _handle_error(self, run: RunRow, state: dict[str, Any], error: StateError) -> None:
        """Route to the first matching Catch, else fail the run; always one transaction."""
        self.in_flight.pop(run.run_id, None)
        name = run.current_state
        catcher = _catcher_for(state, error.name)
        document = None
        if catcher is not None:
            document = set_path(run.document, catcher.get("ResultPath", "$"), {"Error": error.name, "Cause": error.cause})
            try:
                check_state_size(document, self.limits, f"the state after catching {error.name} in {name}")
            except StateError as too_big:
                catcher, error = None, StateError(too_big.name, f"{too_big.cause} (while catching {error})")
        step = self._open_step(run)
        message = f"{error.name}: {error.cause}"
        failure = describe(error.name, error.cause, name)  # the timeline and the log say why in one line
        details = {"state_name": name, "error": error.name, "cause": error.cause}
        with self.store.transaction() as db:
            if not self._still_active(db, run):
                return
            seq = step.seq if step else self.store.open_step(db, run, name, state["Type"], None)
            self.store.close_step(db, run.run_id, seq, "FAILED", error=f"{error.name}: {failure.message}")
            if catcher is not None:
                self.store.move(db, run.run_id, document, catcher["Next"])
                self.store.event(db, run.run_id, "ErrorCaught", f"{failure.line()} (caught, going to "
                                 f"{catcher['Next']})", details)
                run.document, run.current_state = document, catcher["Next"]
            else:
                self.store.finish_run(db, run.run_id, "FAILED", output=run.document, error=f"{name}: {message}")
                self.store.event(db, run.run_id, "FlowFailed", failure.line(), details)
                run.status = "FAILED"


def _catcher_for(state: dict[str, Any], error: str) -> dict[str, Any] | None:
    """The first Catcher matching ``error``. ``States.ALL`` matches every error except the
    limit errors, which a catcher must name (as States.DataLimitExceeded in the States Language);
    the transition limit is never caught (see ``limits``)."""
    if error in UNCATCHABLE_ERRORS:
        return None
    for catcher in state.get("Catch", []):
        names = catcher["ErrorEquals"]
        if error in names or ("States.ALL" in names and error not in LIMIT_ERRORS):
            return catcher
    return None


__all__ = ["Interpreter", "ActionUnableToRun", "DEFAULT_WAIT_TIME"]
