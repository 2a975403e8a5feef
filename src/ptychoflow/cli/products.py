"""``ptychoflow show`` and ``ptychoflow export``: look at a reconstruction, hand it to other tools."""

from __future__ import annotations

from pathlib import Path

import click

from ptychoflow.cli._common import console
from ptychoflow.export import FORMATS


@click.command("show")
@click.argument("product", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write [default: SCAN.recon.png beside the product].")
@click.option("--open", "open_viewer", is_flag=True, help="Also open the picture in the desktop's image viewer.")
def show(product: str, out: str | None, open_viewer: bool) -> None:
    """Draw PRODUCT (a .recon.h5): phase and amplitude with colour and scale bars, the probe,
    the loss curve; print what it holds.

    \b
    Examples:
      ptychoflow show site/hpc/products/scan_0001/scan_0001.recon.h5
      ptychoflow show site/hpc/products/scan_0001/scan_0001.recon.h5 --out look.png   # --open: in the desktop's viewer
    """
    from rich.markup import escape
    from rich.table import Table

    from ptychoflow.fs import atomic_write
    from ptychoflow.preview import length_label, render_preview
    from ptychoflow.product import PREVIEW_SUFFIX, PRODUCT_SUFFIX, read_product

    loaded = read_product(product)
    path = Path(product)
    target = Path(out) if out else path.with_name(path.name.removesuffix(PRODUCT_SUFFIX) + PREVIEW_SUFFIX)
    atomic_write(target, lambda tmp: render_preview(loaded, tmp))
    h, w = loaded.object.shape[-2:]
    table = Table(title=f"Reconstruction of {escape(loaded.scan_id)}", show_header=False)
    for key, value in (
        ("engine", f"{loaded.engine}, {loaded.iterations_run} iterations"
                   + (f" (stopped early: {loaded.stop_reason})" if loaded.stopped_early else "")),
        ("final loss", f"{loaded.final_loss:.5g}"),
        ("object", f"{w}x{h} px = {length_label(w * loaded.pixel_size_m)} x {length_label(h * loaded.pixel_size_m)}"),
        ("pixel size", length_label(loaded.pixel_size_m)),
        ("positions", str(len(loaded.positions_px))),
        ("source", loaded.source or "-"),
        ("picture", str(target)),
    ):
        table.add_row(key, escape(value))
    console().print(table)
    if open_viewer:
        click.launch(str(target))


@click.command("export")
@click.argument("product", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help="ptychodus: ptychodus's HDF5 product (opens in ptychodus, which hands it to Pty-chi or "
                   "Tike); cxi: a CXI 1.6 file with NeXus classes.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: beside the product, SCAN.ptychodus.h5 or SCAN.cxi].")
def export(product: str, fmt: str, out: str | None) -> None:
    """Export PRODUCT (a .recon.h5) to a format users' tools open.

    Positions are written in metres with units; the object keeps its place relative to the
    probe positions, so ptychodus shows it where ptychoflow reconstructed it.

    \b
    Examples:
      ptychoflow export site/hpc/products/scan_0001/scan_0001.recon.h5 --format ptychodus
      ptychoflow export site/hpc/products/scan_0001/scan_0001.recon.h5 --format cxi --out scan_0001.cxi
    """
    from ptychoflow.export import export_path, export_product
    from ptychoflow.product import read_product

    loaded = read_product(product)
    target = export_product(loaded, fmt, out or export_path(product, fmt), loaded.instrument())
    click.echo(f"wrote {target}")
