"""
twistd plugin stub for C{twistd opencue-gateway}.

Deliberately tiny: the module path string defers importing the gateway (and Klein,
which imports the reactor) until the subcommand runs, so twistd keeps control of the
reactor choice.
"""

from twisted.application.service import ServiceMaker

opencue_gateway = ServiceMaker(
    "OpenCue REST gateway",
    "opencue_gw.tap",
    "Cuebot's gRPC API as HTTP/JSON, compatible with OpenCue's Go REST gateway",
    "opencue-gateway",
)
