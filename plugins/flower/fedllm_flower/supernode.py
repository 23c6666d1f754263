"""``flower-supernode`` with shorter polling: ``python -m fedllm_flower.supernode --pull-interval
S <flower-supernode arguments>``.

Flower 1.41's SuperNode loop (``flwr.supernode.start_client_internal``) sleeps 3 s after every
pull that found no message, and 0.5 s between looks for the ClientApp's reply; neither is
configurable. A tiny-model round then costs ~3.5 s of waiting on top of ~0.1 s of training.
This launcher runs Flower's own ``flower-supernode`` entry point with that module's ``time``
replaced by a clock whose ``sleep`` waits ``--pull-interval`` instead of the 3 s (an empty pull
is one request to the SuperLink: 1/S requests per second per idle node) and 20 ms instead of
the local 0.5 s waits, and shortens the back-off of its object pulls (``fast_object_pulls``).
Everything else is Flower's. With ``--pull-interval 3`` only the local waits change.
"""

from __future__ import annotations

import sys
import time as _time
from typing import Any

LOCAL_WAIT = 0.02


class PollClock:
    """Stands in for the ``time`` module inside ``start_client_internal``."""

    def __init__(self, pull_interval: float):
        self.pull_interval = pull_interval

    def sleep(self, seconds: float) -> None:
        # the module's only sleeps: 3 s after an empty pull, 0.5 s while waiting locally
        _time.sleep(self.pull_interval if seconds >= 1 else min(seconds, LOCAL_WAIT))

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def patch(pull_interval: float) -> bool:
    """Install the clock; False (nothing changed) if Flower's module no longer looks as
    expected."""
    from flwr.supernode import start_client_internal as sci

    if getattr(sci, "time", None) is not _time:
        return False
    sci.time = PollClock(pull_interval)  # type: ignore[assignment]
    return True


def fast_object_pulls(initial: float = 0.02, cap: float = 1.0) -> None:
    """Flower pulls a message's objects (its arrays) with a back-off of 1 s doubling to 10 s
    while they are not there yet, and they often are not: a sender pushes the message first and
    its objects right after, so a receiver that sees the message at once waits 1-3 s for
    objects that arrive within milliseconds. Start the back-off at ``initial`` (capped at
    ``cap``) in this process: the SuperNode pulling from the SuperLink, the ServerApp pulling
    replies."""
    from flwr.supercore.inflatable import inflatable_utils as iu

    for fn in (iu.pull_objects, iu.pull_and_inflate_object_from_tree):
        kw = fn.__kwdefaults__
        if kw is not None and "initial_backoff" in kw and "backoff_cap" in kw:
            kw["initial_backoff"], kw["backoff_cap"] = initial, cap


def main() -> None:
    args = sys.argv[1:]
    interval = 3.0
    if "--pull-interval" in args:
        i = args.index("--pull-interval")
        interval = float(args[i + 1])
        del args[i:i + 2]
    fast_object_pulls()
    if not patch(interval):
        print("fedllm: this Flower's SuperNode loop is not the one expected; using its own "
              "polling intervals", file=sys.stderr)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *args]
    flower_supernode()


if __name__ == "__main__":
    main()
