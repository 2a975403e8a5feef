"""Virtual beamline and scan reader throughput (issue: foundation).

Prints, at 64x64 and 128x128:
- physics: frames/s of the forward model (FFT + Poisson noise);
- emit: frames/s written to HDF5 *and* published on the ZeroMQ stream (a live subscriber
  drains it in a thread, so the socket's queue never hides the cost);
- read: frames/s read back from HDF5.
Target: emit >= 2,000 frames/s at 128x128 on 2 cores, so the simulator never limits the pipeline.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import _common  # noqa: F401  (puts src/ on sys.path)
from _common import header, median, row, timed

from ptychoflow.scan.format import iter_frame_batches
from ptychoflow.simulate.beamline import SimulationOptions, emit_scan, simulate_scan
from ptychoflow.stream import FramePublisher, FrameSubscriber

CASES = {64: SimulationOptions(), 128: SimulationOptions(frame_size=128, object_size=512, step_px=20, probe_diameter_px=72)}


def drain(subscriber: FrameSubscriber, expected: int, done: threading.Event) -> None:
    seen = 0
    while seen < expected:
        message = subscriber.recv(timeout_s=5)
        if message is None:
            break
        seen += message.kind == "frame"
    done.set()


def main() -> None:
    header("virtual beamline: frames per second (median of 5)")
    row("frame", "frames", "physics fps", "emit fps (HDF5 + ZeroMQ)", "read fps")
    with tempfile.TemporaryDirectory() as tmp:
        for size, options in CASES.items():
            sim = simulate_scan(options, scan_id="bench")
            n = sim.scan.n_frames
            physics = timed(lambda: simulate_scan(options, scan_id="bench"), repeats=3)
            publisher = FramePublisher("tcp://127.0.0.1:0")
            subscriber = FrameSubscriber(publisher.address)
            publisher.wait_for_subscribers(1, 5)
            path = Path(tmp) / f"scan_{size}.h5"

            def emit() -> None:
                done = threading.Event()
                thread = threading.Thread(target=drain, args=(subscriber, n, done), daemon=True)
                thread.start()
                emit_scan(sim.scan, path, publisher=publisher)
                done.wait(30)

            emits = timed(emit)
            reads = timed(lambda: sum(len(b) for b in iter_frame_batches(path)))
            row(f"{size}x{size}", n, n / median(physics), n / median(emits), n / median(reads))
            subscriber.close()
            publisher.close()


if __name__ == "__main__":
    main()
