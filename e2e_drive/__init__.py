"""e2e-drive: end-to-end steering models, from driving log to edge artifact.

Importing the package registers every Keras layer the project puts into a model (``custom_layers`` and
``data_tools.frame_preprocess.FramePreprocess``), so ``keras.saving.load_model(path)`` loads any ``.keras``
file e2e-drive writes: at once when Keras is already imported, else the moment Keras is (so that the console
script answers ``--help`` without loading TensorFlow).
"""

import contextlib
import importlib.abc
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


# Keras imports TensorFlow, whose C++ runtime prints notices (oneDNN, cuInit on a machine without a GPU, absl
# warnings) straight to stderr. TF_CPP_MIN_LOG_LEVEL is read once, when TensorFlow loads, so it is decided here,
# before that first import. Hidden unless the CLI runs with --verbose; a TF_CPP_MIN_LOG_LEVEL set in the
# environment always wins.
_QUIET = not _cli_verbose() and os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "0"


def _register_layers() -> None:
    import custom_layers  # noqa: F401  (registers Maxout, PReLU, ELU, RReLU, APL, ReferenceConv2D)
    import data_tools.frame_preprocess  # noqa: F401  (registers FramePreprocess)


class _LoadedThen(importlib.abc.Loader):
    """A module's own loader, run with the C++ log lines held back, then ``then()``."""

    def __init__(self, loader, then=None):
        self.loader, self.then = loader, then

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _without_cpp_log_lines() if _QUIET else contextlib.nullcontext():
            self.loader.exec_module(module)
        if self.then is not None:
            self.then()


class _WhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers the layers the moment Keras is imported, whoever imports it.

    ``keras.saving.load_model`` needs Keras, so a ``.keras`` file never loads before the layers are registered; and
    ``import e2e_drive`` alone (the console script, ``e2e-drive --help``) stays free of TensorFlow's seconds.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in ("keras", "tensorflow"):
            return None
        # The spec the other finders give (TensorFlow also asks for Keras' spec just to see that it is there).
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _LoadedThen(spec.loader, self._keras_loaded if name == "keras" else None)
        return spec

    def _keras_loaded(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        _register_layers()


if "keras" in sys.modules:
    _register_layers()
else:
    sys.meta_path.insert(0, _WhenKerasLoads())

__version__ = "0.1.0"
