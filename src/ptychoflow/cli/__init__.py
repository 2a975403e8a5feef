"""The one ``ptychoflow`` command line; each subsystem owns one module here."""
