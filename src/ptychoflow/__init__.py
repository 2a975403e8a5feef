"""ptychoflow: automated X-ray ptychography with Globus flows."""

__version__ = "0.1.0"
