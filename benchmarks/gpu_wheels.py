"""Fetch the wheels the GPU check carries (cp312 manylinux x86-64) into .whl/, with their sizes.

    make gpu-wheels             (or: python benchmarks/gpu_wheels.py [--dest .whl])

Needs network to the package index; every wheel's sha256 is checked against
benchmarks/gpucheck/wheels.txt. Fails if wheels and source tree together exceed 64 MiB,
the most that may travel to the GPU machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from gpucheck.wheels import BUDGET_BYTES, WHEEL_DIR, fetch, read_pins, tree_bytes, wheel_file  # noqa: E402

MIB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=WHEEL_DIR, help=f"folder for the wheels (default {WHEEL_DIR})")
    args = parser.parse_args()
    pins = read_pins()
    fetch(args.dest, pins)
    print(f"{'wheel':<80} {'MiB':>6}  needed by")
    total = 0
    for pin in pins:
        path = wheel_file(pin, args.dest)
        size = path.stat().st_size
        total += size
        print(f"{path.name:<80} {size / MIB:>6.2f}  {pin.why}")
    tree = tree_bytes()
    print(f"{len(pins)} wheels {total / MIB:.1f} MiB + source tree {tree / MIB:.1f} MiB = "
          f"{(total + tree) / MIB:.1f} MiB of the {BUDGET_BYTES / MIB:.0f} MiB budget, in {args.dest}")
    if total + tree > BUDGET_BYTES:
        print("over budget: drop a wheel or shrink the tree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
