"""What the entry points share: the user sees emoclip's own errors as one clear message."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from emoclip.errors import EmoclipError

T = TypeVar("T")


def user_error(err: BaseException) -> EmoclipError | None:
    """The EmoclipError behind an exception, also when Hydra's instantiate wrapped it."""
    seen = err
    while seen is not None:
        if isinstance(seen, EmoclipError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def run_reporting_errors(job: Callable[[], T]) -> T:
    try:
        return job()
    except KeyboardInterrupt:
        # Inside fit/validate/test Lightning handles Ctrl-C (see emoclip.faults); this is the
        # rest: reading data, building the model, writing the run folder.
        raise SystemExit("emoclip: interrupted (Ctrl-C)") from None
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        raise SystemExit(f"emoclip: {cause}") from None
