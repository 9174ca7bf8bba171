"""Small helpers shared by the command-line entry points (main.py and tools/)."""

from __future__ import annotations

import sys

from absl import flags, logging


def program_name(argv0: str) -> str:
  """How errors name the program: `fmp_jax.main` for `python -m fmp_jax.main` (whose argv[0]
  is .../fmp_jax/main.py), else the script's file name (e.g. `count.py`)."""
  path = argv0.replace("\\", "/")
  if path.endswith("fmp_jax/main.py"):
    return "fmp_jax.main"
  return path.rsplit("/", 1)[-1]


def flags_parser(argv):
  """absl flags parser that turns bad flags and config typos into one clear line.

  ml_collections reports an unknown `--config.a.b=...` override as an
  AttributeError deep inside flag parsing; users should see the field name and
  the suggestion, not a traceback.
  """
  prog = program_name(argv[0])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    msg = str(e)
    if "Traceback (most recent call last)" in msg:   # get_config() raised: its last line
      lines = [line for line in msg.splitlines() if line.strip()]
      msg = f"{lines[0]} {lines[-1]}"
    sys.exit(f"{prog}: error: {msg}\nTry --helpfull for the flags.")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    bad = [a for a in argv[1:] if a.startswith("--config.")]
    where = f" in {', '.join(bad)}" if bad else ""
    sys.exit(f"{prog}: error: bad config override{where}: {msg}")
  except SyntaxError as e:
    sys.exit(f"{prog}: error: config file {e.filename}, line {e.lineno}: syntax error: {e.msg}")


def quiet_logs():
  """Hide JAX's INFO chatter (e.g. the absent-TPU probe) in command-line tools."""
  logging.set_verbosity(logging.WARNING)


def config_or_exit(holder, prog: str):
  """The config behind a DEFINE_config_file holder, or one clear line and exit 2.

  ml_collections loads config files lazily and re-raises a load failure at
  first access; turn that (missing file, syntax error, get_config() raising)
  into a message naming the file.
  """
  try:
    value = holder.value
    if value is not None:
      value.to_dict()  # a failed load surfaces only on first attribute access
    return value
  except (IOError, OSError) as e:
    detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    sys.exit(f"{prog}: error: cannot load the config file: {detail}")
