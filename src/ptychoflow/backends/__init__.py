"""Backends: one interface (``Backend``), two implementations (local, globus)."""
