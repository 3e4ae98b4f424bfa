"""What the command-line tools print: quiet TensorFlow, short log lines, progress, errors.

Not part of the paper; the tools (`tools/*.py`) share it so that a run reads the same in a
terminal and in a log file.

- TensorFlow's C++ library logs through its own logger. By default the tools start it with
  TF_CPP_MIN_LOG_LEVEL=2 (errors only) and drop, from what it prints while it loads and
  probes for GPUs, the lines that carry no news: absl's "before InitializeLog" banner, the
  "Could not find cuda drivers" notice, and the "failed call to cuInit" error, the last one
  only on a machine without an NVIDIA driver (on a GPU machine it is a real error and
  stays). Nothing hides a GPU (CUDA_VISIBLE_DEVICES is never touched). A user's own
  TF_CPP_MIN_LOG_LEVEL wins, and `--verbosity=1` (absl's flag) shows everything.
- Our own lines go through absl logging at INFO, formatted as "HH:MM:SS message"
  (warnings and errors say so); the libraries' INFO lines (TFDS: "Load dataset info
  from ...") are dropped unless --verbosity=1.
- `Progress` logs one line every N items with the rate and ETA: no escape codes, so a
  log file reads like the terminal.
- `run(main)` replaces `app.run(main)`: a bad-input error (ValueError, OSError, a
  TensorFlow NotFound/InvalidArgument/DataLoss error) ends the run with one line
  "tools.NAME: error: ..." and exit status 1; `--debug` (or `--verbosity=1`) shows the
  traceback instead.
"""
import contextlib
import datetime
import glob
import logging as std_logging
import os
import re
import sys
import tempfile
import time

from absl import app, flags, logging

QUIET_LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR either
# Lines TensorFlow prints while it loads, before its own log level applies.
_LOAD_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^I\d{4} .*cudart_stub\.cc:\d+\] Could not find cuda drivers"),
)
_CUINIT = re.compile(r"^E\d{4} .*\] failed call to cuInit")
_SEVERITY = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d")


def has_nvidia_driver():
    """True where an NVIDIA kernel driver is loaded (then a failing cuInit is real news)."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))


def early_flags(argv):
    """(verbosity, debug) from argv before the tool's own flags exist (absl's parser)."""
    values = flags.FlagValues()
    flags.DEFINE_integer("verbosity", None, "", short_name="v", flag_values=values)
    flags.DEFINE_bool("debug", False, "", flag_values=values)
    try:
        values(list(argv), known_only=True)
    except flags.Error:  # the tool's own parse reports it properly later
        return None, False
    return values.verbosity, values.debug


def tensorflow_log_level(verbosity, environ=None):
    """(TF_CPP_MIN_LOG_LEVEL to use, whether to filter the load-time lines)."""
    environ = os.environ if environ is None else environ
    if "TF_CPP_MIN_LOG_LEVEL" in environ:
        return environ["TF_CPP_MIN_LOG_LEVEL"], False  # the user's choice wins
    if verbosity is not None and verbosity >= 1:
        return "0", False
    return QUIET_LEVEL, True


def is_load_noise(line, min_level=int(QUIET_LEVEL), nvidia_driver=False):
    """Whether a line TensorFlow printed while loading is dropped at this log level."""
    if any(pattern.match(line) for pattern in _LOAD_NOISE):
        return True
    if _CUINIT.match(line):
        return not nvidia_driver
    match = _SEVERITY.match(line)
    return bool(match) and "IWEF".index(match.group(1)) < min_level


@contextlib.contextmanager
def filtered_stderr(drop):
    """Captures file descriptor 2 (C++ writes there too) and replays the lines not dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not drop(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def load_tensorflow(verbosity=None):
    """Imports TensorFlow and probes its devices with the quiet log level; returns tf.

    Call it before anything imports TensorFlow (the level is read once, at load time):
    `run` does; a tool that imports TensorFlow at module level calls it first, and then
    `verbosity` is read from sys.argv.
    """
    if verbosity is None:
        verbosity, _ = early_flags(sys.argv)
    level, filtered = tensorflow_log_level(verbosity)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    if "tensorflow" in sys.modules or not filtered:
        import tensorflow as tf
        return tf
    nvidia_driver = has_nvidia_driver()
    with filtered_stderr(lambda line: is_load_noise(line, int(level), nvidia_driver)):
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe, while the filter is on
    return tf


class _ShortFormatter(std_logging.Formatter):
    """'12:03:04 message'; 'WARNING: ' / 'ERROR: ' before the message where it applies."""

    def format(self, record):
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        message = record.getMessage()
        if record.levelno >= std_logging.WARNING:
            message = f"{record.levelname}: {message}"
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return f"{stamp} {message}"


# The project's code: its INFO lines are the ones a tool shows by default.
_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               package) + os.sep
                  for package in ("deeplab_tf", "tools", "experiments"))


def _is_own_or_important(record):
    """Our INFO lines and everyone's warnings; not TFDS's "Load dataset info from ..."."""
    return record.levelno >= std_logging.WARNING or os.path.abspath(
        record.pathname).startswith(_OWN_DIRS)


def setup_logging():
    """absl logging to stderr at INFO (unless --verbosity says otherwise), short lines.

    By default only the project's own INFO lines pass (libraries' warnings still do);
    --verbosity=1 shows every library's lines with absl's full prefix (file:line).
    """
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
    if flags.FLAGS.verbosity < 1:
        handler = logging.get_absl_handler()
        handler.setFormatter(_ShortFormatter())
        handler.addFilter(_is_own_or_important)


def _is_bad_input(error):
    if isinstance(error, (ValueError, OSError)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, (
        tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.DataLossError,
        tf.errors.FailedPreconditionError))


def error_line(tool, error):
    """'tools.NAME: error: MESSAGE' (TensorFlow errors: their message, not the op trace)."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if hasattr(error, "op"):  # a tf.errors.OpError: the first line is the news
        message = message.strip().splitlines()[0]
    return f"{tool}: error: {message}"


def run(main, argv=None, tensorflow=True):
    """`app.run(main)` with the quiet console and one-line errors (see the docstring).

    Loads TensorFlow (`load_tensorflow`) before `main` unless `tensorflow` is False.
    """
    if "debug" not in flags.FLAGS:
        flags.DEFINE_bool("debug", False, "On an error, show the Python traceback instead "
                          "of one line.")
    tool = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    tool = f"tools.{tool}" if tool != "-c" else "python"

    def wrapped(args):
        setup_logging()
        if tensorflow:
            load_tensorflow(flags.FLAGS.verbosity)
        try:
            return main(args)
        except KeyboardInterrupt:
            print(f"\n{tool}: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as error:  # pylint: disable=broad-except
            if not _is_bad_input(error) or flags.FLAGS.debug or flags.FLAGS.verbosity >= 1:
                raise
            print(error_line(tool, error) + "  (--debug shows the traceback)",
                  file=sys.stderr, flush=True)
            sys.exit(1)

    app.run(wrapped, argv=argv)


def duration(seconds):
    """'0:01:05': a whole number of seconds as H:MM:SS."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class Progress:
    """One log line every `every` items (and at the end): count, rate and ETA.

        progress = Progress("evaluated", total=60, unit="images", every=10)
        for ...: progress.update()
    """

    def __init__(self, action, total=None, unit="items", every=10, clock=time.monotonic,
                 log=logging.info):
        self._action, self._total, self._unit, self._every = action, total, unit, every
        self._clock, self._log = clock, log
        self._start = clock()
        self.count = 0

    def update(self, count=1):
        self.count += count
        if self.count % self._every == 0 or self.count == self._total:
            self._log("%s", self.line())

    def line(self):
        elapsed = self._clock() - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self._total:
            text = (f"{self._action} {self.count}/{self._total} {self._unit} "
                    f"({100.0 * self.count / self._total:.0f}%) | {rate:.2f} {self._unit}/s")
            if rate > 0 and self.count < self._total:
                text += f" | ETA {duration((self._total - self.count) / rate)}"
        else:
            text = f"{self._action} {self.count} {self._unit} | {rate:.2f} {self._unit}/s"
        return text + f" | {duration(elapsed)} elapsed"
