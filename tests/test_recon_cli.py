"""``ptychoflow reconstruct``: help, a run with its summary, and a clean one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from _recon_helpers import tiny_scan, write_tiny
from ptychoflow.cli.reconstruct import reconstruct

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_help_has_examples():
    result = CliRunner().invoke(reconstruct, ["--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--engine" in result.output


def test_run_prints_summary_and_writes_product(tmp_path):
    scan = write_tiny(tmp_path)
    result = CliRunner().invoke(reconstruct, [str(scan), "-n", "2", "--engine", "ptychi", "--device", "cpu",
                                              "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Reconstruction of tiny" in result.output and "ptychi on cpu" in result.output
    assert (tmp_path / "out" / "tiny.recon.h5").exists()


def test_bad_scan_is_one_red_line_exit_2(tmp_path):
    sim = tiny_scan()
    scan = write_tiny(tmp_path, data=sim.scan.data[:4], positions_m=sim.scan.positions_m[:4])
    proc = subprocess.run([sys.executable, "-m", "ptychoflow", "reconstruct", str(scan), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "only 4 positions" in proc.stderr and str(scan) in proc.stderr
    assert not (tmp_path / "o").exists()


def test_complex_frames_are_refused_by_the_installed_command(tmp_path):
    """Complex frames once had their real part reconstructed silently; now one line names the dataset."""
    sim = tiny_scan()
    scan = write_tiny(tmp_path, data=sim.scan.data * (1 + 0.25j))
    command = Path(sys.executable).with_name("ptychoflow")
    proc = subprocess.run([str(command), "reconstruct", str(scan), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert f"{scan}: /entry/data/data: counts must be real numbers (integer or float), got complex" in proc.stderr
    assert not (tmp_path / "o").exists()
