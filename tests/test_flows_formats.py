"""The reconstruct flow on an Eiger scan, with the real remote function, on the local engine:
the master's data files and position file travel with it, rPIE reads it, and the product
comes back with a ptychodus export that ptychodus's own reader opens."""

from __future__ import annotations

import numpy as np

from engine_helpers import write_profile
from foreign_files import write_eiger, write_velociprobe_positions
from ptychoflow.backends.local import LocalBackend
from ptychoflow.flow_inputs import reconstruct_input
from ptychoflow.flowengine.providers.base import EngineEnv
from ptychoflow.flowengine.worker import Engine
from ptychoflow.profile import load_profile
from ptychoflow.resources import flow_path, functions_dir


def test_reconstruct_flow_on_an_eiger_scan_exports_for_ptychodus(tmp_path, small_scan):
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    path = write_profile(tmp_path)
    text = path.read_text().replace('[beamline]\npath = "beamline"', '[beamline]\npath = "beamline"\nframe_size = 32')
    path.write_text(text + '\n[policy]\niterations = 3\nexport_formats = ["ptychodus"]\n')
    profile = load_profile(path)
    backend = LocalBackend.from_profile(profile)
    backend.register_function(functions_dir() / "reconstruct.py", "reconstruct")
    frames, positions = np.asarray(small_scan.scan.data, np.uint32), small_scan.scan.positions_m
    (tmp_path / "beamline" / "positions").mkdir()
    write_eiger(tmp_path / "beamline", "fly042", frames, positions, detector_shape=(40, 44), frames_per_file=40,
                position_file=False)
    write_velociprobe_positions(tmp_path / "beamline" / "positions" / "fly042.txt", positions)
    body = reconstruct_input(profile, "fly042_master.h5", scan_id="fly042")
    assert [item["destination_path"] for item in body["beamline"]["transfer"]] == [
        "/scans/fly042_master.h5", "/scans/fly042_data_000001.h5", "/scans/fly042_data_000002.h5", "/scans/positions/fly042.txt"]
    run = backend.start_run(backend.deploy_flow(flow_path("reconstruct")), body)
    engine = Engine(EngineEnv.from_profile(profile))
    try:
        engine.run_until_finished(run.run_id, 300)
    finally:
        engine.close()
    run = backend.get_run(run.run_id)
    assert run.status.value == "SUCCEEDED", run.error
    results = tmp_path / "beamline" / "results" / "fly042"
    assert sorted(p.name for p in results.iterdir()) == ["fly042.ptychodus.h5", "fly042.recon.h5", "fly042.recon.png"]
    theirs = H5ProductFileIO().read(results / "fly042.ptychodus.h5")
    assert theirs.object_.get_layer(0).shape[-1] > 32 and len(theirs.probe_positions) == len(frames)
    assert theirs.metadata.photon_energy_eV == np.float64(8800.0)
