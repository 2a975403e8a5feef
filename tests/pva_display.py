"""An EPICS display stand-in, run as its own process: reads one NTNDArray PV with pvapy's
client (pvAccessCPP, another implementation than the edge's p4p) and prints it as JSON.

    python pva_display.py PV OUT.npz
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pvaccess as pva


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    value = pva.Channel(name).get("field()")
    dims = [int(d["size"]) for d in value["dimension"]]
    (data,) = value["value"][0].values()
    image = np.asarray(data, np.float32).reshape(dims[::-1])
    attributes = {}
    for attribute in value["attribute"]:
        (v,) = attribute["value"][0].values() if isinstance(attribute["value"], tuple) else attribute["value"].values()
        attributes[attribute["name"]] = v
    np.savez(out, image=image)
    print(json.dumps({"shape": list(image.shape), "attributes": attributes}), flush=True)


if __name__ == "__main__":
    main()
