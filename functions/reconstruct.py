"""Globus Compute function: reconstruct one scan with rPIE and write a Reconstruction product.

Self-contained on purpose: Globus Compute serialises the function, so every import is inside
the body and the arguments and result are small JSON values (large data stay on disk). The
local compute pool loads this file by path and calls the same function, unchanged.
"""


def reconstruct(
    scan_path,
    output_dir,
    engine="auto",
    iterations=100,
    batch_size=8,
    alpha=0.1,
    probe_refinement=True,
    position_refinement=False,
    device="auto",
    time_limit_s=None,
    seed=0,
):
    """Reconstruct `scan_path` (ptychoflow .h5 or Tike .npz/.npz.bz2) into `output_dir`.

    Returns a dict: product_path, preview_path, iterations, final_loss, wall_time_s, engine,
    engine_reason, device, stopped_early, stop_reason, scan_id, object_shape, n_positions.
    Bad input raises ptychoflow's ScanError (one line naming file and field); no product is
    written then.
    """
    import logging

    from ptychoflow.recon import api
    from ptychoflow.recon.base import RpieOptions

    log = logging.getLogger("ptychoflow.functions.reconstruct")
    options = RpieOptions(
        iterations=int(iterations),
        batch_size=int(batch_size),
        alpha=float(alpha),
        probe_refinement=bool(probe_refinement),
        position_refinement=bool(position_refinement),
        device=str(device),
        time_limit_s=None if time_limit_s is None else float(time_limit_s),
        seed=int(seed),
    )

    def progress(info):
        log.info("iteration %d/%d loss %.6g", info.iteration, info.total, info.loss)

    result = api.reconstruct(scan_path, options, engine=str(engine), progress=progress)
    return api.write_reconstruction(result, output_dir).to_json()
