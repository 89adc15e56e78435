"""The error type of bad input: anything a user can fix by changing what they passed.

    raise InputError("config.optim.lr=-0.001: must be positive and finite")
    raise MissingInput("config.init_from is empty: give the SFT run, e.g. --config.init_from=runs/sft")

`InputError` is a `ValueError` (so `except ValueError` keeps catching it) whose message names the
config field, file, tensor or argument at fault. `MissingInput` is also a `FileNotFoundError`: an
input that is not there (an empty path field, a run directory without the file a stage needs).
The command-line entry points (`warm_jax.cli`, `python -m warm_jax.average`) print the message
and exit with status 2 for either; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2  # the exit status of a command refused for bad input


class InputError(ValueError):
  """Bad input: a config value, an argument, a missing or damaged file; the message names it."""


class MissingInput(InputError, FileNotFoundError):
  """An input that is not there: an empty path field, a file or directory that does not exist."""
