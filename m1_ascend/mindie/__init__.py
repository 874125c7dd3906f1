"""MindIE Service support: the ``config.json`` schema, its generator and its checker.

``schema`` is the single description of the file; ``generator`` writes it for a Baichuan-M1
weight directory from the memory plan; ``check`` validates an existing file against the schema,
this host and the weights.
"""

from .check import HostAssumptions, check_config_file
from .generator import GeneratedConfig, GenerationError, ServiceOptions, build_config, write_config
from .schema import MindIEConfig, Problem, parse_config

__all__ = ["GeneratedConfig", "GenerationError", "HostAssumptions", "MindIEConfig", "Problem", "ServiceOptions",
           "build_config", "check_config_file", "parse_config", "write_config"]
