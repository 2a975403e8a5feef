"""benchmarks/sparse.py's verdicts: the sentences the issue asks for, read off the table's rows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sparse import Row, verdicts  # noqa: E402


def _sweep(rpie: list[float], nn: list[float]) -> list[Row]:
    overlaps = (0.9, 0.8, 0.6, 0.4, 0.2, 0.0)
    rows = [Row(f"overlap {o}", o, 10, r, n, None, None, 1.0) for o, r, n in zip(overlaps, rpie, nn)]
    return rows + [Row("dose / 10", 0.8, 10, rpie[1] * 0.5, nn[1] * 0.9, None, None, 1.0)]


def test_the_crossings_are_interpolated_between_overlaps():
    said = verdicts(_sweep([0.95, 0.9, 0.85, 0.7, 0.3, 0.1], [0.6, 0.6, 0.6, 0.5, 0.5, 0.4]))
    assert said[0] == "PtychoNN overtakes rPIE (SSIM vs truth) at overlap ~0.30"  # 0.4 - 0.2 * 0.2 / 0.4
    assert said[1] == "rPIE falls below SSIM 0.8 (vs truth) at overlap ~0.53 (the APS work: 0.6)"
    assert "PtychoNN scores 0.400 against truth: the > 0.8 of the APS work is not reached here" in said[2]
    assert said[3].startswith("dose / 10: PtychoNN keeps 90% of its full-dose SSIM, rPIE 50%")


def test_no_crossing_is_said_plainly():
    above = verdicts(_sweep([0.5] * 6, [0.9] * 6))
    assert above[0] == "PtychoNN is at or above rPIE (SSIM vs truth) at every overlap"
    assert above[1] == "rPIE is below SSIM 0.8 (vs truth) already at the densest overlap"
    assert "is reached" in above[2]
    below = verdicts(_sweep([0.9] * 6, [0.5] * 6))
    assert below[0] == "PtychoNN stays below rPIE (SSIM vs truth) at every overlap"
    assert below[1] == "rPIE stays at or above SSIM 0.8 (vs truth) at every overlap"
