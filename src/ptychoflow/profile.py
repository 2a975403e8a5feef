"""Deployment profile: one TOML file describing the beamline, HPC and edge sites.

Each site has a local path (used by the local backend) and Globus ids (used by the globus
backend), so switching backends changes the profile, never the flow JSON.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ptychoflow.errors import ProfileError
from ptychoflow.flowengine.limits import RunLimits
from ptychoflow.fs import atomic_write_text
from ptychoflow.polish import POLISH_SWEEPS
from ptychoflow.recon.base import RpieOptions
from ptychoflow.recon.registry import AUTO, ENGINE_CHOICES, ENGINES
from ptychoflow.scan.reader import ReadOptions
from ptychoflow.scan.registry import format_names
from ptychoflow.site import SiteLayout

PROFILE_FILENAME = "ptychoflow.toml"
# A profile installed under /etc (configuration) keeps a relative state_dir under /var/lib
# (variable state, the systemd units' StateDirectory=ptychoflow), as the FHS wants: the units
# cannot write to /etc, and operators' commands with the same profile find the same state.
SYSTEM_CONFIG_DIR = Path("/etc")
SYSTEM_STATE_DIR = Path("/var/lib/ptychoflow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_nul(value: Path) -> Path:
    if "\x00" in str(value):
        raise ValueError("contains a NUL byte")
    return value


class Site(_Strict):
    """A place data lives: a local directory and, for Globus, a collection."""

    path: Path = Field(description="The site's directory, as the machines that work on it see it.")
    collection_id: str | None = Field(default=None, description="Globus collection UUID (globus backend).")
    collection_base_path: str = Field(
        default="/", description="`path` as the collection shows it: / when the collection is rooted at the site "
        "directory (a guest collection, the local backend), the full path when it is rooted at / (a mapped collection).")

    @field_validator("collection_base_path")
    @classmethod
    def _absolute_posix(cls, value: str) -> str:
        if not value.startswith("/") or "\\" in value or any(part == ".." for part in value.split("/")):
            raise ValueError("must be an absolute POSIX path on the collection, without '..'")
        return value

    _path_has_no_nul = field_validator("path")(_no_nul)


class BeamlineSite(Site):
    patterns: list[str] = Field(default_factory=lambda: ["*.h5"], description="Glob patterns of scan files.")
    name: str = "beamline"
    scan_format: str = Field(default="auto", description="Scan layout: auto (detected) | ptychoflow | eiger | cxi | tike-npz.")
    frame_size: int | None = Field(default=None, ge=8, description="Crop Eiger/CXI frames to this square about the beam centre.")
    positions_file: str | None = Field(default=None, description="Eiger: the position file, if not <prefix>_positions.txt.")
    y_source: Literal["interferometer", "encoder"] = Field(default="interferometer",
                                                          description="Eiger/Velociprobe position file: which y column.")

    @field_validator("scan_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in format_names():
            raise ValueError(f"unknown scan format {value!r}; known: {', '.join(format_names())}")
        return value

    def read_options(self) -> ReadOptions:
        """What the scan readers are told."""
        return ReadOptions(frame_size=self.frame_size, y_source=self.y_source,
                           positions_file=Path(self.positions_file) if self.positions_file else None)


class ComputeSite(Site):
    endpoint_id: str = Field(default="local-hpc", description="Globus Compute endpoint UUID, or a local pool name.")
    workers: int = Field(default=1, ge=1, description="Concurrent tasks in the local process pool.")
    retries_on_worker_loss: int = Field(
        default=0, ge=0, description="local pool: reruns of a task whose process died mid-call (the engine was "
                                     "killed); 0 = at most once (Globus Compute's max_retries_on_system_failure)")
    user_endpoint_config: dict[str, Any] = Field(
        default_factory=dict, description="Sent with every task to the endpoint (its template's variables, e.g. account).")


class EngineLimits(_Strict):
    """Bounds of each run on the local engine; each one breached fails the run with a
    States.* error (flows/README.md). The defaults are ``RunLimits``'s."""

    max_transitions: int = Field(default=RunLimits.max_transitions, ge=1, description="states entered per run")
    max_state_bytes: int = Field(default=RunLimits.max_state_bytes, ge=1,
                                 description="JSON bytes of the run input, its state and an action's request body")
    expression_cpu_seconds: float = Field(default=RunLimits.expression_cpu_seconds, gt=0,
                                          description="thread CPU time of one .= expression")
    expression_max_size: int = Field(default=RunLimits.expression_max_size, ge=1,
                                     description="characters or items of the largest value an expression builds")

    def run_limits(self) -> RunLimits:
        return RunLimits(**self.model_dump())


class Functions(_Strict):
    """Registered remote function ids, filled by `ptychoflow functions register`."""

    model_config = ConfigDict(extra="allow")


# The engine names come from the rPIE engine registry: "auto | tike (GPU) | ptychi (GPU or CPU)".
ENGINE_HELP = " | ".join([AUTO, *(f"{spec.name} ({' or '.join(d.upper() for d in spec.devices)})" for spec in ENGINES.values())])


class Policy(_Strict):
    """Reconstruction and continual-learning knobs (see DESIGN.md, continual learning).

    The code's one default for each knob: the flows' inputs always carry every knob
    (``flow_inputs``), and functions that take one default to ``policy_default(name)``.
    rPIE's knobs default to ``RpieOptions``, the engines' own settings.
    """

    engine: Literal[ENGINE_CHOICES] = Field(default=AUTO, description=ENGINE_HELP)  # type: ignore[valid-type]
    iterations: int = Field(default=RpieOptions.iterations, ge=1, description="rPIE iterations per scan")
    batch_size: int = Field(default=RpieOptions.batch_size, ge=1, description="rPIE positions per update (raise on GPUs)")
    alpha: float = Field(default=RpieOptions.alpha, gt=0, le=1, description="rPIE object step")
    probe_start: Literal["auto", "given", "last"] = Field(
        default=RpieOptions.probe_start,
        description="rPIE probe start: auto (candidates tried on the data) | given (the scan's own guess) | "
                    "last (the probe of this site's last good reconstruction; auto when there is none)")
    ssim_tolerance: float = Field(default=0.5, ge=0, le=1,
                                  description="skip retraining when the best model scores at least this vs rPIE")
    promote_margin: float = Field(default=0.005, ge=0, description="a new model must beat the best by this much to be promoted")
    train_epochs: int = Field(default=50, ge=1, description="most epochs per training")
    train_time_limit_s: float = Field(default=3600, gt=0, description="most seconds per training")
    model: Literal["ptychonn", "ptychonn2"] = Field(default="ptychonn2",
                                                   description="ptychonn (amp+phase, ~1.2 M) | ptychonn2 (phase, light)")
    patch_size: int = Field(default=64, description="network input/output size (64 or 128)")
    export_formats: list[Literal["ptychodus", "cxi"]] = Field(
        default=[], description='also write each product as these, beside it: ["ptychodus", "cxi"]')

    @field_validator("patch_size")
    @classmethod
    def _known_size(cls, value: int) -> int:
        if value not in (64, 128):
            raise ValueError("must be 64 or 128")
        return value


def default_of(section: type[BaseModel], name: str) -> Any:
    """The code's default of setting `name` of a profile section, for code outside the
    profile that needs the same default (one place per default)."""
    return section.model_fields[name].default


def policy_default(name: str) -> Any:
    """The default of policy knob `name`."""
    return default_of(Policy, name)


def _section_toml(section: type[BaseModel]) -> str:
    """A template section's lines: every setting at its default, with its description."""
    lines = []
    for name, info in section.model_fields.items():
        assignment = tomli_w.dumps({name: info.default}).strip()
        lines.append(f"{assignment:<28} # {info.description}")
    return "\n".join(lines)


class Watcher(_Strict):
    settle_seconds: float = Field(default=2.0, ge=0)
    poll: bool = False
    poll_interval_s: float = Field(default=2.0, gt=0)
    max_active_runs: int = Field(default=2, ge=1)
    batch_every_n: int = Field(default=1, ge=1)
    batch_every_minutes: float = Field(default=0, ge=0)
    flow: str = "reconstruct_and_train"
    experiment: str = "commissioning"
    give_up_after_s: float = Field(default=3600.0, gt=0, description="A file that stays unchanged but never becomes a "
                                   "finished scan (not HDF5, incomplete, ...) is given up after this long; a later "
                                   "change brings it back.")
    inactive_slot: Literal["keep", "free"] = Field(
        default="keep", description="An INACTIVE run (waiting for a consent) keeps its slot, or frees it for the next scan.")
    inactive_timeout_minutes: float = Field(
        default=30, ge=0, description="With inactive_slot = keep: the slot is freed after this long anyway.")

    def inactive_hold_s(self) -> float:
        """How long an INACTIVE run keeps its slot (0 when the policy frees it at once)."""
        return self.inactive_timeout_minutes * 60 if self.inactive_slot == "keep" else 0.0


class Edge(Site):
    endpoint_id: str = "local-edge"
    user_endpoint_config: dict[str, Any] = Field(
        default_factory=dict, description="Sent with every task to the edge endpoint (its template's variables).")
    stream_address: str = Field(default="tcp://127.0.0.1:5555", description="ZeroMQ frame stream to subscribe to.")
    results_address: str = Field(default="tcp://127.0.0.1:5556", description="ZeroMQ results stream to publish.")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)
    batch_size: int = Field(default=16, ge=1)
    max_wait_ms: float = Field(default=10.0, ge=0)
    queue_frames: int = Field(default=4096, ge=1)
    max_scan_mb: float = Field(default=256.0, gt=0, description="Most mosaic memory one scan may take; frames "
                               "whose positions would need more are refused (reason position_span).")
    max_open_scans: int = Field(default=8, ge=1, description="Most scans open at once; a new start closes the "
                                "longest-idle one, never one still receiving frames.")
    scan_idle_s: float = Field(default=30.0, gt=0, description="An open scan with no frame for this long may be "
                               "closed (saved, incomplete) to make room for a new one.")
    polish_sweeps: int = Field(default=POLISH_SWEEPS, ge=0, description="rPIE sweeps across a finished scan's frames "
                               "that polish its live image, through the model's measured probe (0: never).")
    # pvAccess (EPICS, areaDetector's PVA plugin), as at APS beamlines; needs p4p (extra "pva")
    pva_channel: str | None = Field(default=None, description="NTNDArray channel to read frames from, e.g. 13SIM1:Pva1:Image.")
    pva_pixel_size_m: float | None = Field(default=None, gt=0, description="Object pixel size of those frames (m).")
    pva_position_attributes: tuple[str, str] = Field(default=("PositionY", "PositionX"),
                                                     description="NDAttributes holding each frame's (y, x) position.")
    pva_position_scale: float = Field(default=1.0, gt=0, description="Attribute value x scale = metres (1e-6 for um).")
    pva_output: str | None = Field(default=None, description="PV name to serve the live phase on (NTNDArray).")
    pva_output_interval_s: float = Field(default=0.5, gt=0, description="Fastest update of that PV.")


class Globus(_Strict):
    flow_id: str | None = None
    group_id: str | None = Field(default=None, description="Viewers/starters/administrators of the flow.")
    subscription_id: str | None = None
    client_id: str | None = Field(default=None, description="Native app client id for `ptychoflow login`.")


class Profile(_Strict):
    """The whole deployment. `root` is where the profile file lives; relative paths hang off it."""

    backend: Literal["local", "globus"] = "local"
    state_dir: Path = Field(default=Path("state"),
                            description="Run store, watcher journal, function registry, logs (the model registry lives at "
                                        "<hpc.path>/registry). Relative to the profile, or to /var/lib/ptychoflow for a "
                                        "profile under /etc.")
    beamline: BeamlineSite
    hpc: ComputeSite
    edge: Edge
    policy: Policy = Field(default_factory=Policy)
    watcher: Watcher = Field(default_factory=Watcher)
    engine: EngineLimits = Field(default_factory=EngineLimits)
    globus: Globus = Field(default_factory=Globus)
    functions: dict[str, str] = Field(default_factory=dict, description="function name -> registered id")
    root: Path = Field(default=Path("."), exclude=True)

    _state_dir_has_no_nul = field_validator("state_dir")(_no_nul)

    def resolve(self, path: Path) -> Path:
        """Absolute path for a profile-relative path."""
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def state_path(self) -> Path:
        """The state directory: relative to the profile's folder, or to /var/lib/ptychoflow
        for a profile under /etc (see SYSTEM_STATE_DIR)."""
        if not self.state_dir.is_absolute() and self.root.resolve().is_relative_to(SYSTEM_CONFIG_DIR):
            return (SYSTEM_STATE_DIR / self.state_dir).resolve()
        return self.resolve(self.state_dir)


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile; any problem is one line naming the file and the key."""
    path = Path(path)
    if path.is_dir():
        path = path / PROFILE_FILENAME
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ProfileError(path, "(file)", "no such profile; create one with `ptychoflow init DIR`") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(path, "(file)", f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}") from None
    except OSError as exc:
        raise ProfileError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "(toml)", str(exc)) from None
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ProfileError(path, key, first["msg"].removeprefix("Value error, ")) from None
    profile.root = path.resolve().parent
    _require_directories(path, profile)
    return profile


def _require_directories(path: Path, profile: Profile) -> None:
    """Each site and the state dir is a directory or not there yet, never a file."""
    places = {"state_dir": profile.state_dir, "beamline.path": profile.beamline.path,
              "hpc.path": profile.hpc.path, "edge.path": profile.edge.path}
    for key, place in places.items():
        resolved = profile.resolve(place)
        if resolved.exists() and not resolved.is_dir():
            raise ProfileError(path, key, f"{resolved} is a file, not a directory")


def find_profile(explicit: str | Path | None = None) -> Profile:
    """The profile named on the command line, else $PTYCHOFLOW_PROFILE, else ./ptychoflow.toml."""
    import os

    candidate = explicit or os.environ.get("PTYCHOFLOW_PROFILE") or Path.cwd() / PROFILE_FILENAME
    return load_profile(candidate)


LOCAL_PROFILE_TEMPLATE = """\
# ptychoflow profile: one deployment (beamline -> HPC -> edge).
# Relative paths are relative to this file. Switching to the real Globus services
# changes `backend` and the *_id fields below, never the flow JSON.
backend = "local"            # "local" (embedded engine) or "globus" (Globus Flows + Compute)
state_dir = "state"          # run store, watcher journal, registered function ids, logs

[beamline]                   # where the detector writes finished scans
path = "acquisition"
patterns = ["scan_*.h5"]     # glob patterns the watcher triggers on (an Eiger: ["*_master.h5"])
# scan_format = "auto"       # auto (detected) | ptychoflow | eiger | cxi | tike-npz
# frame_size = 256           # Eiger/CXI: crop frames to this square about the beam centre
# positions_file = "..."     # Eiger: the position file, if not <prefix>_positions.txt beside the master
# y_source = "interferometer"  # Eiger/Velociprobe position file: "interferometer" or "encoder"
# collection_id = "..."      # Globus collection UUID of the beamline storage

[hpc]                        # where scans are reconstructed and models trained
path = "hpc"                 # scans/, products/, registry/ (the model registry), corpus/
endpoint_id = "local-hpc"    # Globus Compute endpoint UUID (globus) or local pool name
workers = 1                  # concurrent tasks in the local pool
retries_on_worker_loss = 0   # reruns of a task cut short by a killed engine (0: at most once)
# collection_id = "..."
# collection_base_path = "/" # `path` as the collection shows it (the full path for a mapped collection rooted at /)
# user_endpoint_config = { account = "..." }   # sent with every task (the endpoint template's variables)

[edge]                       # the inference box next to the detector
path = "edge"                # models are activated into <path>/model
endpoint_id = "local-edge"
stream_address = "tcp://127.0.0.1:5555"    # detector frame stream (ZeroMQ PUB)
results_address = "tcp://127.0.0.1:5556"   # inferred patches (ZeroMQ PUB)
http_port = 8765             # live mosaic page, bound to 127.0.0.1
batch_size = 16
max_wait_ms = 10.0
max_scan_mb = 256.0          # mosaic memory per scan; frames placed beyond it are refused
# collection_id = "..."

[policy]                     # reconstruction and continual learning
{policy}

[watcher]
settle_seconds = 2.0         # a complete scan must be unchanged this long before it triggers
poll = false                 # true on NFS/GPFS where file events are unreliable
max_active_runs = 2          # more finished scans wait in a FIFO queue
give_up_after_s = 3600       # stop waiting for a file unchanged this long that is not a finished scan
inactive_slot = "keep"       # a run waiting for a consent (INACTIVE) keeps its slot ("keep") or frees it ("free")
inactive_timeout_minutes = 30  # ... but for at most this long
flow = "reconstruct_and_train"
experiment = "commissioning"

[engine]                     # the local engine's bounds per run (flows/README.md, "Limits")
{engine}

[globus]
# flow_id = "..."            # pin a deployed flow instead of deploying by checksum
# group_id = "..."           # Globus group allowed to view/start the flow
""".replace("{policy}", _section_toml(Policy)).replace("{engine}", _section_toml(EngineLimits))


def make_site_dirs(profile: Profile) -> Profile:
    """Create a local deployment's beamline, HPC, edge and state directories; returns `profile`."""
    layout = SiteLayout.from_profile(profile)
    for directory in (layout.beamline_root, layout.hpc.root, layout.edge.root, layout.state_dir):
        directory.mkdir(parents=True, exist_ok=True)
    return profile


def write_local_profile(directory: str | Path, *, force: bool = False) -> Path:
    """Write a commented local profile and its site directories under `directory`."""
    directory = Path(directory)
    target = directory / PROFILE_FILENAME
    if target.exists() and not force:
        raise ProfileError(target, "(file)", "already exists; pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, LOCAL_PROFILE_TEMPLATE)
    make_site_dirs(load_profile(target))  # the template must always validate
    return target
