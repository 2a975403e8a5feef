"""A stand-in areaDetector IOC with a PVA plugin, run as its own process by the tests.

It serves one NTNDArray record with pvapy's ``PvaServer`` (pvAccessCPP and pvDatabaseCPP, the
server stack areaDetector's NDPluginPva uses) and publishes frames the way the plugin does:
``uniqueId`` counting up from 1 (reset for a new acquisition), two dimensions fastest
first, no codec, sizes, time stamps, and NDAttributes (``ColorMode``, ``PositionY``,
``PositionX`` as doubles). A second program, the edge, must find and read it.

    python pva_areadetector.py CHANNEL FRAMES.npz [--acquisitions 2] [--rate 200]

It prints ``ready`` once serving, waits for a line on stdin, publishes, prints ``done``, and
keeps serving until stdin closes. Configured through EPICS_PVAS_* like any EPICS server.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pvaccess as pva

FIELD = {np.dtype(np.uint8): "ubyteValue", np.dtype(np.uint16): "ushortValue", np.dtype(np.uint32): "uintValue",
         np.dtype(np.float32): "floatValue"}


def ntndarray(unique_id: int, frame: np.ndarray, position_yx: tuple[float, float]) -> pva.NtNdArray:
    ny, nx = frame.shape
    value = pva.NtNdArray()
    value["uniqueId"] = unique_id
    value["dimension"] = [pva.PvDimension(nx, 0, nx, 1, False), pva.PvDimension(ny, 0, ny, 1, False)]
    value["compressedSize"] = frame.nbytes
    value["uncompressedSize"] = frame.nbytes
    stamp = pva.PvTimeStamp(time.time())
    value["timeStamp"] = stamp
    value["dataTimeStamp"] = stamp
    value["descriptor"] = "ptychoflow test areaDetector"
    value["value"] = {FIELD[frame.dtype]: frame.ravel()}
    value["attribute"] = [pva.NtAttribute("ColorMode", pva.PvInt(0)),
                          pva.NtAttribute("PositionY", pva.PvDouble(float(position_yx[0]))),
                          pva.NtAttribute("PositionX", pva.PvDouble(float(position_yx[1])))]
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("channel")
    parser.add_argument("frames")
    parser.add_argument("--acquisitions", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    arrays = np.load(args.frames)
    frames, positions = arrays["frames"], arrays["positions"]
    server = pva.PvaServer()
    server.addRecord(args.channel, pva.NtNdArray(), None)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(args.acquisitions):
        for i, frame in enumerate(frames):
            server.update(args.channel, ntndarray(i + 1, frame, positions[i]))
            time.sleep(1.0 / args.rate)
        time.sleep(0.2)
    print("done", flush=True)
    sys.stdin.read()  # serve until the test closes our stdin


if __name__ == "__main__":
    main()
