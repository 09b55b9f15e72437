"""Quiet by default: three messages our own checks or a deliberate setting make redundant.

Each is silenced where it is emitted, matched by its text, and nothing else is touched:

* ``import paddle`` warns "No ccache found" (``UserWarning`` from
  ``paddle.utils.cpp_extension.extension_utils``): it concerns compiling C++ extensions,
  which this project never does.
* ``import paddle`` prints "WARNING: OMP_NUM_THREADS set to N, not 1 ... PLEASE USE
  OMP_NUM_THREADS WISELY." to ``sys.stderr`` whenever threads were set on purpose.
* PaddleSeg's config checker and builder log "Add the `num_classes` in train_dataset ... to
  model config" although :func:`paddle_stdc.engine.validate.validate_config` checks
  ``num_classes`` (the value PaddleSeg fills in is the dataset's, as before).

:func:`import_paddle` imports Paddle with the first two held back (``paddle_stdc``'s
``__init__`` calls it before anything else imports Paddle); :func:`install` wraps the logger
of PaddleSeg's two modules. :func:`set_verbose` (the tools' ``--verbose``) lets everything
through again and replays what was held back.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from typing import Any, List, Pattern, Tuple

#: (text pattern, module the warning comes from) of the Python warnings held back.
WARNINGS: Tuple[Tuple[str, str], ...] = (
    (r"No ccache found", r"paddle\.utils\.cpp_extension\.extension_utils"),
)
#: Lines ``import paddle`` prints to stderr that are held back.
STDERR_LINES: Tuple[Pattern[str], ...] = (
    re.compile(r"^WARNING: OMP_NUM_THREADS set to \d+, not 1\."),
    re.compile(r"^PLEASE USE OMP_NUM_THREADS WISELY\.$"),
)
#: PaddleSeg log messages held back, and the PaddleSeg modules whose logger is filtered.
PADDLESEG_MESSAGES: Tuple[Pattern[str], ...] = (
    re.compile(r"^Add the `num_classes` in train_dataset"),
)
PADDLESEG_MODULES = ("paddleseg.cvlibs.builder", "paddleseg.cvlibs.config_checker")

_state = {"verbose": False}
#: What was held back so far, for :func:`set_verbose` to replay: ("warning", WarningMessage),
#: ("stderr", line) or ("paddleseg", (level name, message)).
HELD: List[Tuple[str, Any]] = []


def is_verbose() -> bool:
    return _state["verbose"]


def _warning_held(msg: warnings.WarningMessage) -> bool:
    module = getattr(msg, "filename", "") or ""
    for text, mod in WARNINGS:
        path = mod.replace(r"\.", "/")
        if re.search(text, str(msg.message)) and re.search(path + r"\.py$", module):
            return True
    return False


class _StderrFilter(io.TextIOBase):
    """A stand-in for ``sys.stderr`` that holds back :data:`STDERR_LINES`, line by line."""

    def __init__(self, target: Any) -> None:
        self.target, self.pending = target, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if any(p.search(line) for p in STDERR_LINES):
                HELD.append(("stderr", line))
            else:
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.target.write(self.pending)
            self.pending = ""
        self.target.flush()


def import_paddle() -> None:
    """Import Paddle, holding back its ccache warning and OMP_NUM_THREADS notice (unless
    verbose, or Paddle is already imported); every other warning or line goes through."""
    if "paddle" in sys.modules or is_verbose():
        import paddle  # noqa: F401

        return
    stderr = _StderrFilter(sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        with contextlib.redirect_stderr(stderr):
            import paddle  # noqa: F401
    stderr.flush()
    for msg in caught:
        if _warning_held(msg):
            HELD.append(("warning", msg))
        else:
            warnings.warn_explicit(msg.message, msg.category, msg.filename, msg.lineno)


class _PaddleSegLogger:
    """PaddleSeg's ``paddleseg.utils.logger`` for one module, minus the held-back messages."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._logger, name)
        if name not in ("debug", "info", "warning", "error"):
            return attr

        def log(message: str = "") -> None:
            if not is_verbose() and any(p.search(str(message)) for p in PADDLESEG_MESSAGES):
                HELD.append(("paddleseg", (name.upper(), str(message))))
                return
            attr(message)

        return log


def install() -> None:
    """Filter the logger of :data:`PADDLESEG_MODULES` (idempotent)."""
    import importlib

    for name in PADDLESEG_MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.logger, _PaddleSegLogger):
            module.logger = _PaddleSegLogger(module.logger)


def set_verbose(verbose: bool = True) -> None:
    """Let the held-back messages through from now on (``verbose``) and print those held so
    far, once; ``False`` holds them back again."""
    _state["verbose"] = bool(verbose)
    if not verbose:
        return
    held, HELD[:] = list(HELD), []
    for kind, item in held:
        if kind == "warning":
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)
        elif kind == "stderr":
            print(item, file=sys.stderr)
        else:
            from paddleseg.utils import logger

            getattr(logger, item[0].lower())(item[1])
