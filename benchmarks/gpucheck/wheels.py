"""The wheels the GPU check carries: the pinned list, fetching it, and installing what a machine lacks.

The GPU machine has no network and at most 64 MiB may travel (wheels and source tree
together), so the list names only what that machine lacks (``wheels.txt``). ``fetch`` runs
``pip download`` for cp312 manylinux x86-64 with every hash checked; ``install`` runs
``pip install --no-index --no-deps --target`` for the pins this Python lacks (see ``plan``),
and the check's sections then run with that folder first on ``PYTHONPATH``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ptychoflow.fs import sha256_file

REPO = Path(__file__).resolve().parents[2]
WHEEL_LIST = Path(__file__).with_name("wheels.txt")
WHEEL_DIR = REPO / ".whl"
SITE_ROOT = REPO / ".gpu-check"  # installed wheels, one folder per Python and wheel set (ignored by git)
BUDGET_BYTES = 64 * 2**20  # what may travel to the GPU machine: wheels + source tree
TARGET_PYTHON = "3.12"
TARGET_ABI = "cp312"
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What the GPU machine has (the issue), with what those packages bring along, by the names
# other wheels require them by.
MACHINE = frozenset({
    "numpy", "scipy", "h5py", "scikit-image", "matplotlib", "onnx", "onnxruntime", "torch", "cupy",
    "python-dateutil", "pillow", "packaging", "tifffile", "networkx", "jinja2", "sympy", "filelock", "fsspec",
    "protobuf", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "imageio", "lazy-loader",
})
# Requirements of carried wheels that stay behind, and why.
NOT_CARRIED = {
    "torchvision": "ptychi imports it for one blur, which ptychoflow provides (docs/torchvision.md)",
    "mypy": "a development tool ptychi lists", "pytest": "a development tool ptychi lists",
    "ruff": "a development tool ptychi lists",
    "opencv-python": "tike imports cv2 only in tike.view and tike.align, which rPIE does not use",
}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: str
    why: str

    @property
    def key(self) -> str:
        return canonical(self.name)


def canonical(name: str) -> str:
    """PEP 503 name: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = WHEEL_LIST) -> list[Pin]:
    """`name==version --hash=sha256:H  # why` lines; anything else is a comment or an error."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text, _, why = line.partition("#")
        if not text.strip():
            continue
        match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})\s*", text)
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'name==version --hash=sha256:HEX  # why', got {line!r}")
        pins.append(Pin(match[1], match[2], match[3], why.strip()))
    return pins


def wheel_file(pin: Pin, folder: Path) -> Path | None:
    """The wheel of `pin` in `folder` (file names spell the project with underscores)."""
    for path in sorted(folder.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        if canonical(name) == pin.key and version == pin.version:
            return path
    return None


# -- fetch (here, with network) ----------------------------------------------------------
def fetch(dest: Path = WHEEL_DIR, pins: list[Pin] | None = None) -> list[Path]:
    """Download exactly the pinned wheels into `dest` (hash-checked), removing any other wheel."""
    pins = pins or read_pins()
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--only-binary=:all:",
               "--python-version", TARGET_PYTHON, "--implementation", "cp", "--abi", TARGET_ABI,
               *(arg for platform in TARGET_PLATFORMS for arg in ("--platform", platform)),
               "--require-hashes", "-r", str(WHEEL_LIST), "-d", str(dest)]
    subprocess.run(command, check=True)
    wanted = {wheel_file(pin, dest) for pin in pins}
    if None in wanted:
        missing = [pin.name for pin in pins if wheel_file(pin, dest) is None]
        raise RuntimeError(f"pip did not leave wheels for {', '.join(missing)} in {dest}")
    for path in dest.glob("*.whl"):
        if path not in wanted:
            path.unlink()
    for pin in pins:
        path = wheel_file(pin, dest)
        if sha256_file(path) != pin.sha256:  # pip checked; a stale file of the same name must not slip by
            raise RuntimeError(f"{path}: sha256 differs from {WHEEL_LIST.name}")
    return sorted(wanted)  # type: ignore[arg-type]


def uncovered_requirements(folder: Path = WHEEL_DIR, pins: list[Pin] | None = None) -> dict[str, list[str]]:
    """wheel -> its requirements (on Linux, CPython 3.12) that are neither carried, on the GPU
    machine, nor in NOT_CARRIED: each one an import that would fail there."""
    import zipfile

    from packaging.requirements import Requirement

    pins = pins or read_pins()
    carried = {pin.key for pin in pins}
    environment = {"python_version": TARGET_PYTHON, "sys_platform": "linux", "platform_system": "Linux",
                   "implementation_name": "cpython", "extra": ""}
    uncovered: dict[str, list[str]] = {}
    for pin in pins:
        path = wheel_file(pin, folder)
        with zipfile.ZipFile(path) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            lines = archive.read(metadata).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonical(requirement.name)
            if name not in carried and name not in MACHINE and name not in NOT_CARRIED:
                uncovered.setdefault(path.name, []).append(str(requirement))
    return uncovered


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what travels with the working tree: tracked files and untracked, unignored ones."""
    listing = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    paths = {repo / name for name in listing.decode().split("\0") if name}
    return sum(path.stat().st_size for path in paths if path.is_file())


# -- install (on the GPU machine, no network) ----------------------------------------------
@dataclass
class Bootstrap:
    """What the start of the check found and did about the pinned packages."""

    target: Path | None  # the folder to put first on PYTHONPATH (None: nothing installed)
    installed: dict[str, str]  # name -> version installed from a wheel
    present: dict[str, str]  # name -> version this Python already had (kept)
    unavailable: dict[str, str]  # name -> why it is neither present nor installable
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"target": str(self.target) if self.target else None, "installed": self.installed,
                "present": self.present, "unavailable": self.unavailable, "seconds": round(self.seconds, 1)}


def _older(have: str, want: str) -> bool:
    try:
        from packaging.version import Version
    except ImportError:  # no packaging: trust what is there
        return False
    try:
        return Version(have) < Version(want)
    except ValueError:
        return False


def plan(pins: list[Pin], folder: Path) -> tuple[list[tuple[Pin, Path]], dict[str, str], dict[str, str]]:
    """(pins to install with their wheel, present name -> version, unavailable name -> why).

    A pin is installed when this Python lacks it, or has an older version and the wheel is
    pure Python (it cannot clash with the machine's binaries). An older compiled package is
    kept: it was built against the machine's own numpy.
    """
    todo, present, unavailable = [], {}, {}
    for pin in pins:
        try:
            have = importlib.metadata.version(pin.name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        wheel = wheel_file(pin, folder)
        pure = wheel is not None and wheel.name.endswith("-none-any.whl")
        older = have is not None and _older(have, pin.version)
        if have is not None and (not older or not pure):
            why = "" if not older else f" (older than {pin.version}, {'compiled' if wheel else 'no wheel'}: kept)"
            present[pin.name] = have + why
        elif wheel is None:
            unavailable[pin.name] = f"not installed and no wheel in {folder} (run `make gpu-wheels` where there is network)"
        else:
            todo.append((pin, wheel))
    return todo, present, unavailable


def install(folder: Path = WHEEL_DIR, site_root: Path = SITE_ROOT, pins: list[Pin] | None = None) -> Bootstrap:
    """Install the pins this Python lacks from `folder`, offline, into a folder for PYTHONPATH.

    The folder is named after this Python and the wheels, so a rerun on a warm machine reuses it.
    """
    import time

    started = time.perf_counter()
    todo, present, unavailable = plan(pins or read_pins(), folder)
    if not todo:
        return Bootstrap(None, {}, present, unavailable, time.perf_counter() - started)
    tag = hashlib.sha256("\n".join([sys.version, *sorted(w.name for _, w in todo)]).encode()).hexdigest()[:12]
    target = site_root / f"site-py{sys.version_info.major}{sys.version_info.minor}-{tag}"
    if not (target / ".complete").exists():
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                   "--disable-pip-version-check", "--target", str(partial), *(str(w) for _, w in todo)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["pip failed"]
            unavailable.update({pin.name: f"pip install failed: {reason[0]}" for pin, _ in todo})
            return Bootstrap(None, {}, present, unavailable, time.perf_counter() - started)
        (partial / ".complete").write_text("\n".join(w.name for _, w in todo) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    installed = {pin.name: pin.version for pin, _ in todo}
    return Bootstrap(target, installed, present, unavailable, time.perf_counter() - started)
