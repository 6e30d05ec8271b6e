"""The General Bots BASIC dialect: grammar, analyzer, resumable interpreter, tool schemas.

Knows nothing of channels or storage: the pipeline injects a Host.  Typical use::

    program = compile_source(text, "start.bas")          # once, cached by the caller
    interpreter = Interpreter({program.name: program}, host)
    outcome = await interpreter.start()                  # outcome.state: waiting at HEAR
    outcome = await interpreter.resume(outcome.state, "Maria")
"""

from basic.compiler import Program, check_source, compile_source
from basic.errors import BasicError, BasicRuntimeError, BasicSyntaxError, MissingCapability
from basic.host import FullHost, Host
from basic.interpreter import STATE_VERSION, Globals, Interpreter, Outcome, normalize_globals
from basic.machine import Limits

__all__ = [
    "STATE_VERSION",
    "BasicError",
    "BasicRuntimeError",
    "BasicSyntaxError",
    "FullHost",
    "Globals",
    "Host",
    "Interpreter",
    "Limits",
    "MissingCapability",
    "Outcome",
    "Program",
    "check_source",
    "compile_source",
    "normalize_globals",
]
