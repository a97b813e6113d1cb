"""The version, in a module of its own: what needs it (the User-Agent, `--version`, the build's
dynamic version) reads it here without importing the package's `__init__`."""

__version__ = "0.1.0"
