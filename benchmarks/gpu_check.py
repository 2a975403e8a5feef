"""One prepared GPU check: every GPU path of ptychoflow measured in one command of at most 8 minutes.

    python benchmarks/gpu_check.py OUT_DIR            (or: make gpu-check OUT=OUT_DIR)
    python benchmarks/gpu_check.py OUT_DIR --dry      (CPU, tiny sizes: what CI runs; make gpu-check DRY=1)

It installs the wheels in .whl/ that this Python lacks (pip --no-index --target; fetch them
beforehand with `make gpu-wheels`), then runs each section in its own process under its own
time box:

  machine     what the machine has (GPU, torch, CuPy, ONNX Runtime providers, packages)
  rpie        Tike vs Pty-chi rPIE on one simulated scan, 963 positions at 128², equal
              iterations: position-updates/s, SSIM/RMSE against the truth
  preprocess  CuPy vs NumPy: equal outputs, frames/s for 128² crops of 512² frames
  training    PtychoNN 2.0 at 128²: samples/s, mixed precision vs fp32
  inference   the edge's torch-CUDA backend: µs/frame at batch 1-64, beside Table 1 of the APS paper
  edge        the real edge service end to end: frames/s and p99 latency vs bare inference

It writes OUT_DIR/gpu_check.json (every figure, with the machine and the wheels),
gpu_check.txt (the table), a few images and one log per section, and prints one table.
Exit status 1 if a section failed or overran its box.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "benchmarks", ROOT / "edge", ROOT / "src"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from gpucheck import runner, wheels  # noqa: E402
from gpucheck.sections import SECTIONS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, help="directory for gpu_check.json, the images and the logs")
    parser.add_argument("--dry", action="store_true", help="CPU dry run: tiny sizes, GPU parts skip with their reason")
    parser.add_argument("--budget", type=float, default=runner.BUDGET_S, help="seconds for the whole check (default 480)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections ({', '.join(s.name for s in SECTIONS)})")
    parser.add_argument("--wheels", type=Path, default=wheels.WHEEL_DIR, help="folder of wheels (default .whl/)")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("give the output directory, e.g. python benchmarks/gpu_check.py gpu-check-output")
    out = args.out.resolve()
    if args.section:
        return runner.section_main(args.section, args.module, out, args.deadline, args.dry)
    only = [name.strip() for name in args.only.split(",")] if args.only else None
    unknown = sorted(set(only or []) - {s.name for s in SECTIONS})
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(s.name for s in SECTIONS)}")
    return runner.run_check(out, dry=args.dry, budget_s=args.budget, only=only, wheel_dir=args.wheels.resolve())


if __name__ == "__main__":
    sys.exit(main())
