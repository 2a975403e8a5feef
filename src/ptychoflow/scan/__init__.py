"""Scans: the contract (HDF5 writer and validating reader) and one registry of readers for
the layouts beamlines write (ptychoflow's own, Eiger/NeXus with position files, CXI, Tike)."""

from ptychoflow.scan.format import Instrument, Scan, ScanWriter, read_scan, scan_is_complete, write_scan
from ptychoflow.scan.reader import ReadOptions, ScanReader
from ptychoflow.scan.registry import detect_format, load_scan, register_reader, scan_complete

__all__ = ["Instrument", "ReadOptions", "Scan", "ScanReader", "ScanWriter", "detect_format", "load_scan", "read_scan",
           "register_reader", "scan_complete", "scan_is_complete", "write_scan"]
