"""The Scan contract (HDF5): writer, validating reader, and readers for public layouts."""

from ptychoflow.scan.format import Instrument, Scan, ScanWriter, read_scan, scan_is_complete, write_scan

__all__ = ["Instrument", "Scan", "ScanWriter", "read_scan", "scan_is_complete", "write_scan"]
