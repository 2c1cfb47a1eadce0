"""
OpenCue REST gateway: Cuebot's gRPC API as HTTP and JSON, on Twisted.

Kept import-light on purpose: importing the package must not import Klein, grpc or the
reactor, so the twistd plugin stub and the command-line tools stay cheap and leave the
reactor choice to twistd.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
