"""e2e-drive: end-to-end steering models, from driving log to edge artifact.

Importing the package registers every Keras layer the project puts into a model (``custom_layers`` and
``data_tools.frame_preprocess.FramePreprocess``), so ``keras.saving.load_model(path)`` loads any ``.keras``
file e2e-drive writes.
"""

import contextlib
import os
import re
import sys
import tempfile


def _cli_verbose() -> bool:
    """Whether this process is the ``e2e-drive`` CLI run with ``--verbose``.

    ``python -m e2e_drive`` imports this package while ``sys.argv[0]`` is still ``"-m"``; the console
    script's ``argv[0]`` is ``.../e2e-drive``.
    """
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    is_cli = program in ("e2e-drive", "-m") or (program == "__main__.py" and "e2e_drive" in sys.argv[0])
    return is_cli and "--verbose" in sys.argv[1:]


# absl/glog line prefix, e.g. "I0000 00:00:1795607725.626977   19557 port.cc:153] ".
_CPP_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |"
                           rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


@contextlib.contextmanager
def _without_cpp_log_lines():
    """Hold back the C++ log lines written to file descriptor 2 inside the block; pass every other line on.

    TensorFlow >= 2.19 logs through absl before ``absl::InitializeLog()``, which ignores TF_CPP_MIN_LOG_LEVEL
    for the lines it prints while loading (the oneDNN notice, "Could not find cuda drivers"), so the
    environment variable alone does not keep them off the user's terminal.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real file descriptor 2 (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = b"".join(line for line in held if not _CPP_LOG_LINE.match(line))
            if kept:
                os.write(2, kept)


# Importing the layers below imports Keras and so TensorFlow, whose C++ runtime prints notices (oneDNN, cuInit
# on a machine without a GPU, absl warnings) straight to stderr. TF_CPP_MIN_LOG_LEVEL is read once, when
# TensorFlow loads, so it is decided here, before that first import. Hidden unless the CLI runs with --verbose;
# a TF_CPP_MIN_LOG_LEVEL set in the environment always wins.
_QUIET = not _cli_verbose() and os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "0"

with _without_cpp_log_lines() if _QUIET else contextlib.nullcontext():
    import custom_layers  # noqa: E402,F401  (registers Maxout, PReLU, ELU, RReLU, APL, ReferenceConv2D)
    import data_tools.frame_preprocess  # noqa: E402,F401  (registers FramePreprocess)

__version__ = "0.1.0"
