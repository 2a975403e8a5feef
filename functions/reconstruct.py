"""Globus Compute function: reconstruct one scan with rPIE and write a Reconstruction product.

Self-contained on purpose: Globus Compute serialises the function, so every import is inside
the body and the arguments and result are small JSON values (large data stay on disk). The
local compute pool loads this file by path and calls the same function, unchanged.
"""


def reconstruct(
    site_root,
    scan_path,
    output_dir,
    engine=None,
    iterations=None,
    batch_size=None,
    alpha=None,
    probe_refinement=None,
    position_refinement=None,
    device=None,
    time_limit_s=None,
    seed=None,
    scan_format=None,
    scan_options=None,
    export_formats=None,
    probe_start=None,
):
    """Reconstruct `scan_path` (any layout ptychoflow reads: ptychoflow .h5, Eiger master with
    its data and position files beside it, CXI, Tike .npz/.npz.bz2) into `output_dir`.

    `site_root` is the HPC site's root as this endpoint sees it (the profile's ``hpc.path``);
    `scan_path`, `output_dir` and a position file are relative to it (the position file to the
    scan's folder), and an absolute path or an escape is refused (one InputError) before
    anything is read or written.

    `scan_format` and `scan_options` (frame_size, positions_file, y_source) say how to read it
    (the profile's [beamline] settings); `export_formats` (e.g. ["ptychodus"]) also writes the
    product in those formats beside it (None: the profile policy's default, none).

    Every option left out (or None) takes the engines' own default: ``RpieOptions`` for the
    rPIE settings, ``ptychoflow.recon.api.reconstruct``'s for the engine (auto). The flows
    always send the profile's policy.

    `probe_start`: "auto" (candidate probes tried on the data), "given" (the scan's own guess),
    or "last": the probe of the newest good product among this one's siblings (the products
    of the session's earlier scans, ``<hpc>/products/<scan id>/``); "auto" when there is none.

    Returns a dict: product_path, preview_path (relative to `site_root`), iterations, final_loss, wall_time_s, engine,
    engine_reason, device, stopped_early, stop_reason, scan_id, object_shape, n_positions,
    exports (format -> path, relative to `site_root`).
    Bad input raises ptychoflow's ScanError (one line naming file and field); no product is
    written then.
    """
    import logging
    from pathlib import Path

    from ptychoflow.export import export_path, export_product
    from ptychoflow.product import latest_good_product, read_product
    from ptychoflow.profile import policy_default
    from ptychoflow.recon import api
    from ptychoflow.recon.base import RpieOptions
    from ptychoflow.scan import load_scan
    from ptychoflow.scan.reader import ReadOptions
    from ptychoflow.site import site_arguments, site_path

    root, paths = site_arguments(site_root, {"scan_path": scan_path, "output_dir": output_dir}, source="reconstruct",
                                 required=("scan_path", "output_dir"))
    log = logging.getLogger("ptychoflow.functions.reconstruct")
    reading = dict(scan_options or {})
    if reading.get("positions_file"):  # relative to the scan's folder, and inside the site like the rest
        beside = (Path(str(scan_path)).parent / str(reading["positions_file"])).as_posix()
        reading["positions_file"] = site_path(root, beside, source="reconstruct", field="scan_options.positions_file")
    scan = load_scan(paths["scan_path"], ReadOptions(**reading), scan_format=scan_format or "auto")
    probe_from, fallback = None, ""
    if probe_start == "last":
        products = Path(paths["output_dir"]).parent
        probe_from = latest_good_product(products, frame=scan.frame_shape[0], pixel_size_m=scan.pixel_size_m,
                                         exclude=paths["output_dir"])
        if probe_from is None:
            fallback = f"no earlier good product in {products} fits this scan, so candidates were tried: "
        log.info("probe start 'last': %s", probe_from or fallback)
        probe_start = None
    given = {"iterations": iterations, "batch_size": batch_size, "alpha": alpha, "probe_refinement": probe_refinement,
             "position_refinement": position_refinement, "device": device, "time_limit_s": time_limit_s, "seed": seed,
             "probe_start": probe_start}
    options = RpieOptions(**{name: value for name, value in given.items() if value is not None})

    def progress(info):
        log.info("iteration %d/%d loss %.6g", info.iteration, info.total, info.loss)

    choice = {} if engine is None else {"engine": str(engine)}
    result = api.reconstruct(scan, options, progress=progress, probe_from=probe_from, **choice)
    result.parameters["probe_start"]["reason"] = fallback + result.parameters["probe_start"]["reason"]
    summary = api.write_reconstruction(result, paths["output_dir"]).to_json()
    export_formats = policy_default("export_formats") if export_formats is None else export_formats
    product = read_product(summary["product_path"]) if export_formats else None
    exports = {fmt: export_product(product, fmt, export_path(summary["product_path"], fmt), product.instrument())
               for fmt in export_formats}
    # the next functions (and the flow's transfers) take these relative to the same root
    summary["exports"] = {fmt: str(Path(path).relative_to(root)) for fmt, path in exports.items()}
    for key in ("product_path", "preview_path"):
        summary[key] = str(Path(summary[key]).relative_to(root))
    return summary
