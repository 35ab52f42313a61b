"""The package version, in a module that imports nothing (store metadata and the package both need it)."""

__version__ = "0.1.0"
