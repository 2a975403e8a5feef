"""Reconstruction quality on data ptychoflow was not tuned on (prints a table; not a test).

    PYTHONPATH=src python benchmarks/recon_quality.py [--references plain,tuned,oracle,known,shot-noise] [--pictures PNG]
                                                      [--iterations N] [--only NAME ...] [--no-star | --star-only]

Every scenario is a scan file from one of two independent forward models:
- ``sim``: ptychoflow's own simulator (``ptychoflow.simulate``), written with its writer;
- ``tb``: the textbook far-field model in ``benchmarks/textbook_model.py``, with its own
  probes (Gaussian/Airy focus off focus, zone plate with central stop, pinhole, diffuser),
  objects, scans in metres and plain-h5py writer.

Each file is reconstructed by every method in the same run, with the same iteration count:
- ``ptychoflow``: ``recon.api.reconstruct`` on the file then ``write_reconstruction``, exactly
  what ``ptychoflow reconstruct --engine ptychi`` does (defaults, robust probe start, product
  written and read back);
- ``plain``: Pty-chi's rPIE called directly with its default options, a Gaussian probe guess
  of the true probe's width (90 % power diameter) scaled with ``ptychi.utils.rescale_probe``;
- optional references: ``tuned`` (plain with ptychoflow's batch size and alpha: what is left
  is the start), ``oracle`` (ptychoflow from the true probe: the ceiling for any start),
  ``known`` (the true probe kept fixed: the ceiling for rPIE on these data, whatever the start) and
  ``shot-noise`` (no reconstruction: the truth with the phase noise the dose leaves an unbiased
  estimator, 1/(2 sqrt(N)) rad per pixel; below 0.80 there, the goal asks for denoising).

Both are scored against the truth on the illuminated region (true probe at the true
positions, >= recon_scenarios.ILLUMINATED of its typical level) after registration: phase RMSE after offset and
ramp removal, SSIM, and the 1/2-bit FRC resolution (half-period, px). The goals: ptychoflow's
SSIM >= plain on every scenario and >= 0.80 wherever the dose is >= 1e4 photons per frame.

The Siemens star (real Velociprobe data) is scored last: the FRC between reconstructions of
its two interleaved halves of positions (1/2 bit) and the smallest radius where its spokes
are still resolved.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import warnings

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
os.environ.setdefault("PTYCHOFLOW_TORCH_THREADS", "1")

import textbook_model as tb  # noqa: E402
from _common import torch_threads  # noqa: E402
from recon_scenarios import ILLUMINATED, SCENARIOS, SSIM_GOAL, SSIM_GOAL_DOSE, Scenario, Truth, by_name  # noqa: E402

from ptychoflow import metrics  # noqa: E402

# --------------------------------------------------------------------------- the two reconstructions


@dataclass
class Outcome:
    score: metrics.PhaseScore
    seconds: float
    placed: np.ndarray = field(repr=False)  # the object on the truth's grid (NaN where none)
    note: str = ""


def run_ptychoflow(path: Path, truth: Truth, iterations: int, workdir: Path, *, oracle: bool = False,
                   probe_known: bool = False) -> Outcome:
    """The user's path: the scan file through reconstruct and write_reconstruction, the product read back.

    `oracle`: start from the true probe instead (no trials): the ceiling for any start.
    `probe_known`: and keep it (no probe refinement): the ceiling for rPIE on these data at all.
    """
    from ptychoflow.product import read_product
    from ptychoflow.recon.api import reconstruct, write_reconstruction
    from ptychoflow.recon.base import RpieOptions
    from ptychoflow.scan import load_scan

    start = time.perf_counter()
    scan = load_scan(path)
    oracle = oracle or probe_known
    if oracle:
        scan.probe_guess = truth.probe
    options = RpieOptions(iterations=iterations, device="cpu", probe_start="given" if oracle else "auto",
                          probe_refinement=not probe_known)
    result = reconstruct(scan, options, engine="ptychi")
    summary = write_reconstruction(result, workdir / ("known probe" if probe_known else "oracle" if oracle else "ptychoflow"))
    seconds = time.perf_counter() - start
    product = read_product(summary.product_path)
    placed = metrics.place_on_grid(product.object, product.object_origin_px - truth.origin_px, truth.object.shape)
    start_info = product.parameters.get("probe_start", {})
    return Outcome(metrics.score_against_truth(placed, truth.object, truth.mask()), seconds, placed,
                   str(start_info.get("chosen", "")))


def shot_noise_floor(path: Path, truth: Truth, *, seed: int = 0) -> Outcome:
    """The truth plus the phase noise an unbiased estimator cannot avoid at this dose.

    Each object pixel gets sigma = 1 / (2 sqrt(N)) rad, N the photons that left it over the
    whole scan (each frame's measured counts shared out by the true |P|^2, times |O|^2): the
    Cramer-Rao limit for phase, at most 4 units of Fisher information per photon. It is not a
    bound on rPIE, whose early stop smooths, and SSIM rewards smoothing; it says how much the
    photons alone allow. Where it reads below the 0.80 goal, meeting the goal means denoising.
    """
    from ptychoflow.product import illumination_map
    from ptychoflow.scan import load_scan

    start = time.perf_counter()
    counts = np.asarray(load_scan(path).data, np.float64).sum(axis=(1, 2)).mean()
    share = illumination_map(truth.probe, truth.positions_px - truth.origin_px, truth.object.shape)
    photons = counts * share / float((np.abs(truth.probe) ** 2).sum()) * np.abs(truth.object) ** 2
    sigma = 0.5 / np.sqrt(np.maximum(photons, 1e-12))
    noise = np.random.default_rng(seed).standard_normal(truth.object.shape) * sigma
    noisy = truth.object * np.exp(1j * noise)
    mask = truth.mask()
    return Outcome(metrics.score_against_truth(noisy, truth.object, mask), time.perf_counter() - start, noisy,
                   f"{np.median(photons[mask]):.0f} photons/px")


def run_plain_ptychi(path: Path, truth: Truth, iterations: int, *, guess: np.ndarray | None = None,
                     settings: dict[str, float] | None = None) -> Outcome:
    """Pty-chi rPIE as its examples use it: default options, a Gaussian guess, positions zero-centred.

    `guess` replaces the Gaussian (a check of this runner with the true probe); `settings`
    (batch_size, alpha) replace Pty-chi's defaults (the "tuned" reference: ptychoflow's values).
    """
    import h5py

    from ptychoflow.recon.torchvision_compat import ensure_ptychi_importable

    ensure_ptychi_importable()
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask
    from ptychi.utils import get_suggested_object_size, rescale_probe

    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"][()].astype(np.float32)
        positions_m = f["/entry/data/positions"][()]
        energy = float(f["/entry/instrument/energy_keV"][()])
        distance = float(f["/entry/instrument/detector_distance_m"][()])
        detector_pixel = float(f["/entry/instrument/detector_pixel_size_m"][()])
    n = data.shape[-1]
    wavelength = tb.HC_KEV_M / energy
    pixel = wavelength * distance / (n * detector_pixel)
    positions = positions_m / pixel
    centre = positions.mean(axis=0)
    positions = positions - centre
    guess = tb.flat_gaussian(n, truth.probe_width_px()) if guess is None else guess
    probe = rescale_probe(np.asarray(guess, np.complex64)[None], data)

    options = api.RPIEOptions()
    options.data_options.wavelength_m = wavelength
    shape = get_suggested_object_size(positions, (n, n), extra=16)
    options.object_options.pixel_size_m = pixel
    options.reconstructor_options.num_epochs = iterations
    options.reconstructor_options.default_device = api.Devices.CPU  # this machine has no GPU
    options.reconstructor_options.random_seed = 0
    if settings:
        options.reconstructor_options.batch_size = int(settings["batch_size"])
        options.object_options.alpha = options.probe_options.alpha = float(settings["alpha"])
    with torch_threads(int(os.environ["PTYCHOFLOW_TORCH_THREADS"])):
        task = PtychographyTask(options, diffraction_data=data, object_data=np.ones((1, *shape), np.complex64),
                                probe_data=probe[None], probe_position_y_px=positions[:, 0],
                                probe_position_x_px=positions[:, 1])
        task.run()
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    seconds = time.perf_counter() - start
    # Pty-chi puts position p at object index p + round(shape / 2) - 0.5 with the patch corner
    # (n - 1) / 2 before it: object index j holds scan-frame pixel j - round(shape / 2) + centre.
    origin = -np.round(np.array(shape) / 2) + centre
    placed = metrics.place_on_grid(obj, origin - truth.origin_px, truth.object.shape)
    return Outcome(metrics.score_against_truth(placed, truth.object, truth.mask()), seconds, placed)


# --------------------------------------------------------------------------- the Siemens star

SIEMENS_STAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "siemens-star-small.npz.bz2"


def _subscan(scan, indices: np.ndarray, suffix: str):
    from dataclasses import replace

    return replace(scan, scan_id=f"{scan.scan_id}-{suffix}", data=np.asarray(scan.data)[indices],
                   positions_m=scan.positions_m[indices])


def _on_grid(result, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return metrics.place_on_grid(result.object, result.object_origin_px - origin, shape)


def siemens_star(path: Path, iterations: int) -> list[str]:
    """Halves FRC (1/2 bit) and the smallest radius where the spokes resolve, as printable lines."""
    from ptychoflow import siemens_star as star
    from ptychoflow.product import illumination_map
    from ptychoflow.recon.api import reconstruct
    from ptychoflow.recon.base import RpieOptions
    from ptychoflow.scan import load_scan

    scan = load_scan(path)
    options = RpieOptions(iterations=iterations, device="cpu")
    started = time.perf_counter()
    full = reconstruct(scan, options, engine="ptychi")
    halves = [reconstruct(_subscan(scan, np.arange(k, scan.n_frames, 2), f"half{k}"), options, engine="ptychi")
              for k in (0, 1)]
    seconds = time.perf_counter() - started
    origin, shape = full.object_origin_px, full.object.shape
    a, b = (_on_grid(h, origin, shape) for h in halves)
    lit = np.ones(shape, bool)
    for half in halves:
        light = illumination_map(half.probe, half.positions_px - origin, shape)
        lit &= light >= ILLUMINATED * np.percentile(light[light > 0], 95)
    lit &= np.isfinite(a) & np.isfinite(b)
    shift = metrics.registration_shift(np.angle(b), np.angle(a), lit)
    b = metrics.shift_complex(np.where(np.isfinite(b), b, 1.0), shift)
    phase_a = np.angle(a)
    phase_b = metrics.remove_offset_and_ramp(np.angle(b), phase_a, lit)
    curve = metrics.frc_curve(phase_b, phase_a, lit)
    pixel_nm = scan.pixel_size_m * 1e9
    nominal = " (nominal geometry)" if scan.attrs.get("nominal_geometry") else ""

    image = star.StarImage(np.angle(full.object))
    guess = tuple(full.positions_px.mean(axis=0) - origin)
    spokes, share, rough_centre = star.strongest_periodicity(image, guess, np.arange(40, 140, 6))
    centre = star.find_centre(image, rough_centre, spokes, np.arange(20, 100, 8), search_px=5.0)
    resolved = star.spoke_resolution(image, centre, spokes, np.arange(4, 150, 1))
    return [
        f"Siemens star, real Velociprobe data ({scan.n_frames} positions, {scan.frame_shape[0]}^2), "
        f"{iterations} iterations each, {seconds:.0f} s for the whole and both halves; pixel {pixel_nm:.2f} nm{nominal}",
        f"  FRC of the interleaved halves ({halves[0].positions_px.shape[0]} + {halves[1].positions_px.shape[0]} "
        f"positions, registered by {shift[0]:+.2f}, {shift[1]:+.2f} px), 1/2-bit threshold: cutoff "
        f"{curve.cutoff():.3f} cycles/px -> half-period {curve.half_period_px():.2f} px = "
        f"{curve.half_period_px() * pixel_nm:.1f} nm",
        f"  spokes: {spokes} periods (harmonic share {share:.2f}), centre {centre[0]:.1f}, {centre[1]:.1f} px; "
        f"resolved (SNR >= {star.RESOLVED_SNR:g}) down to radius {resolved.radius_px:.0f} px -> "
        f"half-period pi r / N = {resolved.half_period_px:.2f} px = {resolved.half_period_px * pixel_nm:.1f} nm",
    ]


# --------------------------------------------------------------------------- table


METHODS = ("ptychoflow", "plain", "tuned", "oracle", "known", "shot-noise")
# plain: the baseline; tuned: plain with our batch and alpha; oracle: our run from the true probe;
# known: our run with the true probe kept fixed (what rPIE can do with these data at all);
# shot-noise: no reconstruction, the truth with the phase noise the dose leaves an unbiased estimator
REFERENCES = METHODS[1:]


def evaluate(scenario: Scenario, iterations: int, methods: tuple[str, ...]) -> tuple[dict[str, Outcome], Truth]:
    """Every asked method on one scan file, in this order, in one process."""
    from ptychoflow.recon.base import RpieOptions

    defaults = RpieOptions()
    with tempfile.TemporaryDirectory(prefix=f"rq-{scenario.name}-") as tmp:
        directory = Path(tmp)
        path, truth = scenario.make(directory)
        runs = {
            "ptychoflow": lambda: run_ptychoflow(path, truth, iterations, directory),
            "plain": lambda: run_plain_ptychi(path, truth, iterations),
            "tuned": lambda: run_plain_ptychi(path, truth, iterations,
                                              settings={"batch_size": defaults.batch_size, "alpha": defaults.alpha}),
            "oracle": lambda: run_ptychoflow(path, truth, iterations, directory, oracle=True),
            "known": lambda: run_ptychoflow(path, truth, iterations, directory, probe_known=True),
            "shot-noise": lambda: shot_noise_floor(path, truth),
        }
        return {name: runs[name]() for name in methods}, truth


def picture(path: Path, rows: list[tuple[Scenario, Truth, dict[str, Outcome]]]) -> None:
    """One row per scenario: the true phase, then each method's, registered, on the scored region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["truth", *rows[0][2]]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.2 * len(columns), 2.3 * len(rows)), squeeze=False)
    for r, (scenario, truth, outcomes) in enumerate(rows):
        mask = truth.mask()
        box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(mask))
        reference = np.angle(truth.object)
        low, high = np.percentile(reference[mask], [1, 99])
        images = [reference] + [metrics.registered_phase(o.placed, truth.object, mask) for o in outcomes.values()]
        for c, (name, image) in enumerate(zip(columns, images)):
            ax = axes[r, c]
            ax.imshow(np.where(mask, image, np.nan)[box], cmap="gray", vmin=low, vmax=high)
            ax.set_xticks([]), ax.set_yticks([])
            label = name if name == "truth" else f"{name}  SSIM {outcomes[name].score.ssim:.2f}"
            ax.set_title(label, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{scenario.name}\n{scenario.dose:.0e}/frame", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)  # Pty-chi's per-epoch chatter
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=None, help="default: RpieOptions' (ptychoflow's default)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (default: the table's; any of "
                                                                  "recon_scenarios' names works)")
    parser.add_argument("--references", default="plain",
                        help=f"comma-separated, from {', '.join(REFERENCES)} (default: plain); 'none' for none")
    parser.add_argument("--pictures", type=Path, default=None, help="write a PNG: truth and every method per scenario")
    parser.add_argument("--no-star", action="store_true", help="skip the Siemens star")
    parser.add_argument("--star-iterations", type=int, default=None, help="default: RpieOptions'")
    parser.add_argument("--star-only", action="store_true", help="only the Siemens star")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args()
    from ptychoflow.recon.base import RpieOptions

    iterations = args.iterations or RpieOptions().iterations
    references = tuple(r for r in args.references.split(",") if r and r != "none")
    unknown = set(references) - set(REFERENCES)
    if unknown:
        parser.error(f"unknown references: {', '.join(sorted(unknown))}")
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:<30} {s.describe()}")
        return
    chosen = [] if args.star_only else [by_name(n) for n in args.only] if args.only else SCENARIOS
    print(f"# rPIE quality, {iterations} iterations, torch threads {os.environ['PTYCHOFLOW_TORCH_THREADS']}, "
          f"scored where illumination >= {ILLUMINATED:g} x typical; {time.strftime('%Y-%m-%d %H:%M')}")
    header = (f"{'scenario':<29}{'dose':>6} | {'ptychoflow: RMSE':>16}{'SSIM':>6}{'FRC px':>7}{'s':>6}  {'start':<24}"
              + "".join(f"| {r + ': RMSE':>13}{'SSIM':>6}{'FRC px':>7}{'s':>5} " for r in references) + "| goals")
    print(header)
    print("-" * len(header))
    failures, rows = [], []
    for scenario in chosen:
        outcomes, truth = evaluate(scenario, iterations, ("ptychoflow", *references))
        rows.append((scenario, truth, outcomes))
        ours = outcomes["ptychoflow"]
        goals = []
        if "plain" in outcomes and ours.score.ssim < outcomes["plain"].score.ssim:
            goals.append("SSIM<plain")
        if scenario.dose >= SSIM_GOAL_DOSE and ours.score.ssim < SSIM_GOAL:
            goals.append(f"SSIM<{SSIM_GOAL:.2f}")
        failures += [f"{scenario.name}: {g}" for g in goals]
        cells = "".join(f"| {o.score.rmse_rad:>13.3f}{o.score.ssim:>6.2f}{o.score.frc_half_period_px:>7.1f}{o.seconds:>5.0f} "
                        for name, o in outcomes.items() if name != "ptychoflow")
        s = ours.score
        print(f"{scenario.name:<29}{scenario.dose:>6.0e} | {s.rmse_rad:>16.3f}{s.ssim:>6.2f}{s.frc_half_period_px:>7.1f}"
              f"{ours.seconds:>6.0f}  {ours.note[:23]:<24}{cells}| {', '.join(goals) or 'met'}", flush=True)
    if chosen:
        print(f"goals: {'all met' if not failures else 'NOT met: ' + '; '.join(failures)}")
    if args.pictures and rows:
        picture(args.pictures, rows)
        print(f"pictures: {args.pictures}")
    if not args.no_star:
        if SIEMENS_STAR.exists():
            print("\n".join(siemens_star(SIEMENS_STAR, args.star_iterations or iterations)))
        else:
            print(f"Siemens star skipped: {SIEMENS_STAR} not found")


if __name__ == "__main__":
    main()
