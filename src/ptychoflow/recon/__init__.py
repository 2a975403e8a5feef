"""rPIE reconstruction: one entry point over a registry of engines.

    from ptychoflow.recon.api import reconstruct, write_reconstruction
    from ptychoflow.recon.base import RpieOptions

    result = reconstruct("scan_0001.h5", RpieOptions(iterations=60), engine="auto")
    summary = write_reconstruction(result, "products/scan_0001")

- ``registry``: the engines by name (``ENGINES``, ``ENGINE_NAMES``), what "auto" picks and
  why (``choose_engine``). Imports nothing heavy, so the profile and the CLI can ask it.
- ``base``: the options, the engine-neutral prepared input, the result, scan validation.
- ``api``: ``reconstruct`` (scan or path -> result, in memory) and ``write_reconstruction``
  (result -> product files + summary).
- ``tike_engine``, ``ptychi_engine``: the engines; ``torchvision_compat`` lets Pty-chi import.
"""
