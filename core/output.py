"""How much fedllm says on stderr, and what third-party libraries may add to it.

Three levels: ``--quiet`` (warnings and errors only: no header, progress bars or notes),
normal, and ``--verbose`` (the libraries' own info logs, progress bars and every repeat of
their notices). The level lives in ``FEDLLM_VERBOSITY`` so that the processes fedllm starts
(Flower SuperNodes and ClientApps, sandboxes) say as much as the command that started them.

A component prints through ``ctx.console``; a line that starts with ``[yellow]warning:`` or
``[bold red]error:`` is an alert and survives ``--quiet``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rich.console import Console as _RichConsole

QUIET, NORMAL, VERBOSE = 0, 1, 2
ENV = "FEDLLM_VERBOSITY"
ALERTS = ("[yellow]warning:", "[bold red]error:")

#: Loggers whose notices repeat on every forward pass; at normal level each distinct notice
#: shows once per process (bitsandbytes' 8-bit matmul announces its fp32 → fp16 cast on every
#: layer of every step: 140 lines per round on a 7M model).
REPEATING = ("bitsandbytes.autograd._functions",)
#: Libraries whose info logs --verbose shows.
LIBRARIES = ("transformers", "datasets", "accelerate", "peft", "trl", "bitsandbytes")


def verbosity() -> int:
    try:
        return min(max(int(os.environ.get(ENV, NORMAL)), QUIET), VERBOSE)
    except ValueError:
        return NORMAL


def set_verbosity(level: int) -> None:
    os.environ[ENV] = str(level)


class Console(_RichConsole):
    """A rich console that drops everything but alerts under ``--quiet``."""

    def print(self, *objects: Any, **kw: Any) -> None:
        if verbosity() == QUIET and not (objects and isinstance(objects[0], str)
                                         and objects[0].startswith(ALERTS)):
            return
        super().print(*objects, **kw)


class _OncePerMessage(logging.Filter):
    """Let each distinct message template through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_ONCE = _OncePerMessage()


def quiet_libraries() -> None:
    """Fit the libraries' own output to the level: progress bars and known-harmless notices
    would bury the run's own output (STACK.md P11); real warnings still show."""
    import warnings

    import datasets
    import transformers

    level = verbosity()
    for name in REPEATING:
        logger = logging.getLogger(name)
        if level == VERBOSE:
            logger.removeFilter(_ONCE)
        elif _ONCE not in logger.filters:
            logger.addFilter(_ONCE)
    if level == VERBOSE:
        transformers.utils.logging.set_verbosity_info()
        transformers.utils.logging.enable_progress_bar()
        for name in LIBRARIES:
            logging.getLogger(name).setLevel(logging.INFO)
        if not logging.getLogger().handlers:
            logging.basicConfig(format="%(name)s: %(message)s")
        return
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    if level == QUIET:
        transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    # opacus' per-sample hooks on a frozen base (STACK.md P11): harmless
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")
    # Printed on every `import peft` on CPUs with AVX512-BF16; `fedllm doctor` reports it.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
