"""Every example printed in every `--help` page, run as printed (by bash, through the installed
console script) against a fresh profile, in the order of a tour: it succeeds, or it fails
only for the reason stated here.

The world the examples assume, and why each part is there:
- a working directory beside ``../shared/data`` (where the checkout's examples find the real
  scan), with ``PTYCHOFLOW_PROFILE`` pointing at ``./site`` once the first example, ``ptychoflow
  init ./site``, has written it (as `init` tells the user to do);
- that fresh profile with free ports (parallel test runs must not collide on 5555/8765) and
  a small policy (a few rPIE iterations and one training epoch: CI time; always retrain, so
  the registry holds two versions for `models promote` and `rollback`);
- ``./my_functions/hello.py``: the facility's own function directory the
  `functions register --dir` example names;
- ``fly042_master.h5`` (with its data file and ``fly042_positions.txt``) and ``run7.cxi``: the
  detector files the `reconstruct` examples read, written to the Eiger and CXI layouts by
  tests/foreign_files.py (not by ptychoflow), from a simulated scan;
- ``3f2a`` in the `runs` examples stands for a run id prefix: it becomes a prefix of the
  first run the tour started;
- ``$HOME`` is a fresh directory: no Globus tokens.

Services (watch, engine serve, dashboard, edge serve, logs --follow, demo) run until a check
says they work, then get Ctrl-C, as a user would stop them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import tomli_w

from cli_help import all_examples, help_pages
from conftest import SHARED_DATA
from console_script import console_env, needs_console_script

pytestmark = [needs_console_script, pytest.mark.slow]

RUN_PLACEHOLDER = "3f2a"
TOUR = ["ptychoflow", "ptychoflow init", "ptychoflow doctor", "ptychoflow reconstruct", "ptychoflow show",
        "ptychoflow export",
        "ptychoflow flows", "ptychoflow flows validate", "ptychoflow flows show", "ptychoflow flows input",
        "ptychoflow flows run", "ptychoflow flows deploy", "ptychoflow functions", "ptychoflow functions register",
        "ptychoflow runs", "ptychoflow runs list", "ptychoflow runs show", "ptychoflow runs logs", "ptychoflow runs watch",
        "ptychoflow runs cancel", "ptychoflow runs resume", "ptychoflow watch", "ptychoflow watch status",
        "ptychoflow train", "ptychoflow models", "ptychoflow models list", "ptychoflow models show",
        "ptychoflow models promote", "ptychoflow models rollback", "ptychoflow models export",
        "ptychoflow engine", "ptychoflow engine status", "ptychoflow engine stop", "ptychoflow engine serve",
        "ptychoflow dashboard", "ptychoflow edge", "ptychoflow edge serve", "ptychoflow edge status", "ptychoflow logs",
        "ptychoflow beamline", "ptychoflow beamline simulate", "ptychoflow beamline replay",
        "ptychoflow endpoints", "ptychoflow endpoints list", "ptychoflow endpoints status",
        "ptychoflow login", "ptychoflow logout", "ptychoflow whoami", "ptychoflow preflight", "ptychoflow demo"]
SMALL_POLICY = {"iterations": 4, "train_epochs": 1, "train_time_limit_s": 30.0, "ssim_tolerance": 1.0,
                "promote_margin": 0.0}


# -- the world -------------------------------------------------------------------------------
@dataclass
class World:
    root: Path  # holds cwd/ and shared/ (-> the real ../shared)
    cwd: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    @property
    def site(self) -> Path:
        return self.cwd / "site"

    @property
    def state(self) -> Path:
        return self.site / "state"

    def run_id_prefix(self) -> str:
        import sqlite3

        with sqlite3.connect(self.state / "runs.sqlite") as db:
            (run_id,) = db.execute("SELECT run_id FROM runs ORDER BY created LIMIT 1").fetchone()
        return run_id[:6]

    def watcher_status(self) -> dict:
        result = subprocess.run(["ptychoflow", "watch", "status", "--json"], cwd=self.cwd, env=self.env,
                                capture_output=True, text=True, timeout=60)
        return json.loads(result.stdout) if result.returncode == 0 else {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink_profile(world: World) -> None:
    """The fresh profile with free ports and a CI-sized policy (see the module docstring)."""
    path = world.site / "ptychoflow.toml"
    profile = tomllib.loads(path.read_text())
    profile["edge"].update(stream_address=f"tcp://127.0.0.1:{_free_port()}",
                           results_address=f"tcp://127.0.0.1:{_free_port()}", http_port=_free_port())
    profile["policy"].update(SMALL_POLICY)
    profile["watcher"]["settle_seconds"] = 0.5
    path.write_text(tomli_w.dumps(profile))


# -- what each example must do ------------------------------------------------------------------
Check = Callable[[World, str], bool]  # (world, the service's output so far) -> ready?


@dataclass(frozen=True)
class Expect:
    """An example that is not simply "exit 0": a service, or a failure with a stated reason."""

    reason: str
    code: int | tuple[int, ...] = 0  # the exit status (or those allowed)
    stderr: str | None = None  # a regex the error output must match
    ready: Check | None = None  # a service: run until ready, then Ctrl-C
    stop_code: int = 0
    companions: tuple[str, ...] = ()  # examples run while the service runs
    after: Callable[[World], None] | None = None
    unless: Callable[[], bool] | None = None  # where this holds, the example must simply succeed


def _watcher_up(world: World, _: str) -> bool:
    return bool(world.watcher_status().get("watcher_pid"))


def _both_scans_done(world: World, _: str) -> bool:
    counts = world.watcher_status().get("counts", {})
    if counts.get("failed"):
        raise AssertionError(f"a run the watcher started failed: {world.watcher_status()['recent']}")
    return counts.get("done", 0) >= 2


def _engine_serving(world: World, _: str) -> bool:
    from ptychoflow.flowengine.health import engine_pid

    pid = engine_pid(world.state)
    return bool(pid and pid > 0)


def _http_metrics(port: int) -> Check:
    def ready(world: World, _: str) -> bool:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            return False
        names = {family.name for family in text_string_to_metric_families(text)}
        return {"ptychoflow_runs_started", "ptychoflow_engine_up"} <= names

    return ready


def _edge_serving(world: World, _: str) -> bool:
    from ptychoflow_edge.statusfile import running_status

    return running_status(world.site / "edge" / "edge-status.json") is not None


def _printed(text: str) -> Check:
    return lambda world, output: text in output


def _tike_usable() -> bool:
    from ptychoflow.errors import PtychoflowError
    from ptychoflow.recon.registry import choose_engine

    try:
        choose_engine("tike")
    except PtychoflowError:
        return False
    return True


SERVICE = "a service: it runs until stopped; the tour checks that it works, then stops it with Ctrl-C"
NO_GLOBUS = "needs a Globus login (a person at a browser, or a registered client) and the network"
GLOBUS_ERROR = r"^error: .*(Globus|globus)"
PRODUCTION = "names the facility's production profile in /etc/ptychoflow and its service account, absent here"
DEMO = ("runs the whole demo for minutes: the tour sees it acquire its first scan, then stops it with Ctrl-C (it stops "
        "its services and exits 130; run again, it resumes); tests/test_demo.py runs a reduced demo to the end")

EXPECT: dict[str, Expect] = {
    "ptychoflow init ./site": Expect("writes the profile the rest of the tour uses", after=shrink_profile),
    "ptychoflow watch --profile ./site": Expect(SERVICE + " (once the runs of both scans have succeeded: they train "
                                                "the models later examples use)", ready=_both_scans_done),
    "ptychoflow reconstruct site/acquisition/scan_0001.h5 --engine tike --position-refinement":
        Expect("needs Tike and a CUDA GPU", code=2, stderr=r"^error: engine 'tike' unavailable", unless=_tike_usable),
    "ptychoflow watch --profile site/": Expect(SERVICE, ready=_watcher_up),
    "ptychoflow watch --poll": Expect(SERVICE, ready=_watcher_up),
    "ptychoflow watch --no-engine": Expect(SERVICE, ready=_watcher_up),
    "ptychoflow engine serve": Expect(SERVICE, ready=_engine_serving),
    "ptychoflow engine serve --profile ./site/ptychoflow.toml": Expect(SERVICE, ready=_engine_serving),
    "ptychoflow dashboard --profile site/": Expect(SERVICE, ready=_http_metrics(8780)),
    "ptychoflow dashboard --no-engine --port 8781": Expect(SERVICE, ready=_http_metrics(8781)),
    "ptychoflow edge serve --profile site/": Expect(SERVICE, ready=_edge_serving, companions=("ptychoflow edge status",)),
    "ptychoflow edge serve --profile site/ptychoflow.toml": Expect(SERVICE, ready=_edge_serving),
    "ptychoflow edge serve --pva-channel 2IDD:Pva1:Image --pva-pixel-size 1e-8 --pva-output 2IDD:Ptycho:Phase":
        Expect(SERVICE + " (pvAccess channels no IOC serves here: it monitors and publishes all the same)",
               ready=_edge_serving),
    "ptychoflow logs edge --follow": Expect(SERVICE, ready=_printed("ptychoflow.edge")),
    "ptychoflow preflight --profile /etc/ptychoflow/ptychoflow.toml":
        Expect(PRODUCTION, code=2, stderr=r"^error: /etc/ptychoflow/ptychoflow.toml: \(file\): no such profile"),
    "sudo -u ptycho env $(cat /etc/ptychoflow/ptychoflow.env) ptychoflow preflight --identity-mapping "
    "identity_mapping.json": Expect(PRODUCTION, code=(1, 127),  # sudo refuses the user, or is not installed
                                    stderr=r"sudo|ptycho|/etc/ptychoflow/ptychoflow.env"),
    "ptychoflow demo": Expect(DEMO, ready=_printed("scan_0001: acquired"), stop_code=130),
    "ptychoflow demo --scans 2 --epochs 5": Expect(DEMO, ready=_printed("scan_0001: already acquired"), stop_code=130),
    "ptychoflow demo --sparse": Expect(DEMO, ready=_printed("scan_0001: already acquired"), stop_code=130),
}


# Every example on these pages talks to Globus Auth: one line that says what is missing, exit 2.
PAGE_EXPECT: dict[str, Expect] = {page: Expect(NO_GLOBUS, code=2, stderr=GLOBUS_ERROR)
                                  for page in ("ptychoflow login", "ptychoflow logout", "ptychoflow whoami")}


def expectation(page: str, example: str) -> Expect | None:
    return EXPECT.get(command(example)) or PAGE_EXPECT.get(page)


def command(example: str) -> str:
    """The example without its trailing comment."""
    return re.sub(r"\s+#\s.*$", "", example).strip()


def tour() -> list[tuple[str, str]]:
    """(page, example) in tour order; companions run with their service, not on their own."""
    order = {page: i for i, page in enumerate(TOUR)}
    companions = {c for expect in EXPECT.values() for c in expect.companions}
    examples = [(page, example) for page, example in all_examples() if command(example) not in companions]
    return sorted(examples, key=lambda item: order[item[0]])


# -- running them -------------------------------------------------------------------------------
def _launch(world: World, example: str) -> tuple[subprocess.Popen, Path, Path]:
    number = len(world.outputs)
    out, err = world.root / f"{number:03d}.out", world.root / f"{number:03d}.err"
    world.outputs.append(example)
    (world.root / f"{number:03d}.cmd").write_text(example + "\n")  # which example wrote NNN.out/.err
    text = command(example).replace(RUN_PLACEHOLDER, world.run_id_prefix()) if RUN_PLACEHOLDER in example else example
    process = subprocess.Popen(["bash", "-o", "pipefail", "-c", text], cwd=world.cwd, env=world.env,
                               stdin=subprocess.DEVNULL, stdout=open(out, "w"), stderr=open(err, "w"),
                               start_new_session=True)
    return process, out, err


def _report(example: str, code: int | None, out: Path, err: Path) -> str:
    return f"`{example}` exited {code}\n--- stdout\n{out.read_text()[-3000:]}\n--- stderr\n{err.read_text()[-3000:]}"


def run_example(world: World, example: str, expect: Expect | None, timeout: float = 300) -> None:
    if expect is not None and expect.unless is not None and expect.unless():
        expect = None
    if expect is not None and expect.ready is not None:
        return run_service(world, example, expect, timeout)
    process, out, err = _launch(world, example)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(_report(example, None, out, err) + f"\n(still running after {timeout} s)") from None
    stderr = err.read_text()
    assert "Traceback" not in stderr, _report(example, code, out, err)
    wanted = 0 if expect is None else expect.code
    assert code in (wanted if isinstance(wanted, tuple) else (wanted,)), _report(example, code, out, err)
    if expect is not None and expect.stderr:
        assert re.search(expect.stderr, stderr, re.M), _report(example, code, out, err)
    if code == 0 and "--json" in example and not re.search(r"[|>]", command(example)):
        json.loads(out.read_text())  # --json means stdout is JSON and nothing else
    if expect is not None and expect.after is not None:
        expect.after(world)


def run_service(world: World, example: str, expect: Expect, timeout: float) -> None:
    process, out, err = _launch(world, example)
    deadline = time.monotonic() + timeout
    try:
        while not expect.ready(world, out.read_text() + err.read_text()):
            assert process.poll() is None, _report(example, process.returncode, out, err)
            assert time.monotonic() < deadline, _report(example, None, out, err) + f"\n(not ready after {timeout} s)"
            time.sleep(0.5)
        for companion in expect.companions:
            run_example(world, companion, EXPECT.get(command(companion)))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(_report(example, None, out, err) + "\n(did not stop within 60 s of Ctrl-C)") from None
    assert code == expect.stop_code, _report(example, code, out, err)
    assert "Traceback" not in err.read_text(), _report(example, code, out, err)


def _detector_files(directory: Path) -> None:
    """An Eiger master (160x160 detector, bitshuffle data file, Velociprobe position file) and a
    CXI 1.6 file, as those programs write them, holding one small simulated scan."""
    from foreign_files import write_cxi, write_eiger
    from ptychoflow.simulate.beamline import SimulationOptions, simulate_scan

    scan = simulate_scan(SimulationOptions(frame_size=64, object_size=128, seed=7), scan_id="fly042").scan
    frames = scan.data.astype("uint32")
    write_eiger(directory, "fly042", frames, scan.positions_m, detector_shape=(160, 160))
    write_cxi(directory / "run7.cxi", frames, scan.positions_m)


@pytest.fixture
def world(tmp_path) -> World:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no {SHARED_DATA}: the examples replay its real scan")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    cwd = tmp_path / "tour"
    (cwd / "my_functions").mkdir(parents=True)
    (cwd / "my_functions" / "hello.py").write_text("def hello(**kwargs):\n    return {'hello': kwargs}\n")
    _detector_files(cwd)
    (tmp_path / "home").mkdir()
    env = console_env(HOME=str(tmp_path / "home"), PTYCHOFLOW_PROFILE=str(cwd / "site"), COLUMNS="160")
    yield World(tmp_path, cwd, env)
    from ptychoflow.flowengine.worker import stop_engine

    if (cwd / "site" / "state").exists():
        stop_engine(cwd / "site" / "state")


# -- the tests ----------------------------------------------------------------------------------
def test_every_page_has_its_place_in_the_tour_and_every_expectation_its_example():
    pages = {page.name for page in help_pages()}
    assert pages == set(TOUR), f"not in the tour: {pages - set(TOUR)}; gone: {set(TOUR) - pages}"
    printed = {command(example) for _, example in all_examples()}
    assert set(EXPECT) <= printed, f"expectations for examples no page prints: {set(EXPECT) - printed}"
    assert all(expect.reason for expect in EXPECT.values())


@pytest.mark.timeout(1500)
def test_every_example_runs_as_printed(world):
    examples = tour()
    assert examples and examples[0][1].startswith("ptychoflow init ./site")
    started = time.monotonic()
    timings = []
    for page, example in examples:
        t0 = time.monotonic()
        run_example(world, example, expectation(page, example))
        timings.append((time.monotonic() - t0, example))
    slowest = ", ".join(f"{seconds:.0f} s {example[:50]}" for seconds, example in sorted(timings, reverse=True)[:5])
    print(f"{len(examples)} examples in {time.monotonic() - started:.0f} s; slowest: {slowest}")
