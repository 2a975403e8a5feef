"""The virtual beamline: a physical forward model that writes and streams scans like a detector."""
