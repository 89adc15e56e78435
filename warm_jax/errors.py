"""The error type of bad input: anything a user can fix by changing what they passed.

    raise InputError("config.optim.lr=-0.001: must be positive and finite")
    raise MissingInput("config.init_from is empty: give the SFT run, e.g. --config.init_from=runs/sft")
    with reading("checkpoint runs/rm/checkpoints step 200", "restore another step"):
      ...   # any failure of the libraries reading it becomes a DamagedInput / MissingInput

`InputError` is a `ValueError` (so `except ValueError` keeps catching it) whose message names the
config field, file, tensor or argument at fault. `MissingInput` is also a `FileNotFoundError`: an
input that is not there (an empty path field, a run directory without the file a stage needs).
`DamagedInput` is an input that is there but cannot be read as what it should be (a truncated or
overwritten file, a directory where a file should be). `reading` is the one place that turns the
failures of the libraries that read checkpoints and data files (orbax, tensorstore, ArrayRecord,
TFDS, json) into these, naming the input. The command-line entry points (`warm_jax.cli`,
`python -m warm_jax.average`) print the message and exit with status 2 for any of them; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib

EXIT_BAD_INPUT = 2  # the exit status of a command refused for bad input


class InputError(ValueError):
  """Bad input: a config value, an argument, a missing or damaged file; the message names it."""


class MissingInput(InputError, FileNotFoundError):
  """An input that is not there: an empty path field, a file or directory that does not exist."""


class DamagedInput(InputError):
  """An input that is there but cannot be read as what it should be: truncated, overwritten, a
  directory where a file should be, bytes that do not match their recorded checksum."""


_REASON_CHARS = 300  # enough for any library's one-line reason; TensorStore appends whole specs


def describe(e: BaseException) -> str:
  """'<type>: <first line of the message>', at most a few hundred characters. An error that only
  wraps another (TensorStore's 'Encountered error while reading array index ... See full
  TensorStore details: <a spec>') is described by the error it wraps."""
  msg = str(e)
  cause = e.__cause__ or e.__context__
  if "See full TensorStore details" in msg and cause is not None:
    return describe(cause)
  if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
    msg = f"{msg}: {e.filename}"
  line = msg.strip().splitlines()[0] if msg.strip() else ""
  if len(line) > _REASON_CHARS:
    line = line[:_REASON_CHARS] + "..."
  return f"{type(e).__name__}: {line}" if line else type(e).__name__


@contextlib.contextmanager
def reading(what: str, fix: str = ""):
  """Runs the block that reads `what` (e.g. 'checkpoint DIR step 200', 'data file F, record 7');
  any failure in it becomes an error naming `what` and the reason (`describe`), then `fix` (what
  the user can do): MissingInput for a file that is not there, DamagedInput otherwise. An
  InputError raised inside passes unchanged; so do MemoryError and what is not an Exception
  (KeyboardInterrupt, SystemExit). Keep the block to the library calls: an error of the code
  around them is a bug, not a damaged input."""
  try:
    yield
  except InputError:
    raise
  except MemoryError:
    raise
  except Exception as e:  # noqa: BLE001 (the point: every library's own failure types)
    cls = MissingInput if isinstance(e, FileNotFoundError) else DamagedInput
    raise cls(f"{what}: {describe(e)}" + (f"; {fix}" if fix else "")) from e
