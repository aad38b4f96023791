"""Never pay twice: what a step with an effect does when it cannot know what its request did.

A request that creates a job or uploads a file is sent once per execution of the step.
When its outcome is unknown (:class:`~.client.OutcomeUnknown`: a timeout after the request
went out, a dropped connection, a 5xx, an unreadable 2xx), the server may have acted, or
may still be acting: a slow server finishes a request its client stopped waiting for. So
the step looks for its own tagged effect over a *settle window* that outlasts the
request's own timeout, says in its log what it is waiting for, and, if the effect still
does not show, ends with a handled ``outcome_unknown`` error naming what to look for. It
never sends the request again: a second request could not be told apart from a late first
one, and both would be paid for.

A resumed attempt (the process died with the request possibly in flight) does the same:
it keeps looking until the window since the interrupted request was sent has passed (at
most ``RESUME_WINDOW``), and only then sends it, under the same tag.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext

from .client import OutcomeUnknown

T = TypeVar("T")

# The window is twice the request's own timeout, and at least this much longer than it:
# a server that took longer than the timeout to answer is usually done within as long again.
SETTLE_MARGIN = 5.0
# Lookups start quickly (the common case is an answer lost after the work was done) and
# slow down to this interval.
FIRST_LOOK_DELAY = 0.5
MAX_LOOK_DELAY = 15.0
# A resumed attempt looks at most this long after the interrupted request was sent. The
# process that sent it is gone; a server finishes such a request within seconds, while a
# kill that came before the request left would otherwise hold the resume for the whole
# window (twice a timeout of 10 minutes by default).
RESUME_WINDOW = 15.0
# The window ends this long before the step's own time limit, so that the step ends with
# the outcome_unknown error (which names what to look for) rather than a bare timeout.
_DEADLINE_MARGIN = 1.0

# A lookup refused with these statuses is not tried again within the window.
_REFUSED = frozenset({400, 401, 403, 404, 405, 422})

OUTCOME_UNKNOWN = "outcome_unknown"
# The wall-clock time (epoch seconds) a request with an effect was last sent, checkpointed
# before sending: a resumed attempt waits out the window counted from it.
SENT_AT_KEY = "sent_at"


def settle_window(read_timeout: float) -> float:
    """Seconds to keep looking for an effect after a request of ``read_timeout``."""
    return max(2 * read_timeout, read_timeout + SETTLE_MARGIN)


class Settler:
    """Looks for one execution's effect; built when the step starts, to know its deadline."""

    def __init__(
        self, context: StepContext, read_timeout: float, what: str, look_for: dict[str, Any]
    ) -> None:
        self._context = context
        self.window = settle_window(read_timeout)
        # What a user looks for, in words ("a fine-tuning job with metadata a=1, b=2") and
        # as data for the error object ({"metadata": {...}}).
        self.what = what
        self.look_for = look_for
        self._deadline = (
            time.monotonic() + context.timeout - _DEADLINE_MARGIN
            if context.timeout is not None
            else None
        )

    async def look(
        self, find: Callable[[], Awaitable[T | None]], window: float
    ) -> tuple[T | None, StepError | None]:
        """Call ``find`` until it finds the effect or ``window`` seconds have passed.

        Returns what was found (or None) and the last lookup's error, if it failed. Time
        is counted both by the clock and by the sleeps taken, so that a context whose
        sleeps are recorded rather than slept still ends its window.
        """
        if self._deadline is not None:
            window = min(window, self._deadline - time.monotonic())
        started = time.monotonic()
        slept = 0.0
        delay = FIRST_LOOK_DELAY
        lookup_error: StepError | None = None
        while True:
            try:
                found = await find()
            except StepError as exc:
                lookup_error = exc
                found = None
                if exc.status in _REFUSED:
                    return None, exc  # asking again is refused again
            else:
                lookup_error = None
            if found is not None:
                return found, None
            left = window - max(time.monotonic() - started, slept)
            if left <= 0:
                return None, lookup_error
            pause = min(delay, left)
            self._context.log.debug(
                f"{self.what} not found yet; looking again in {pause:.1f}s "
                f"({left:.0f}s of the {window:g}s window left)"
            )
            await self._context.sleep(pause)
            slept += pause
            delay = min(delay * 2, MAX_LOOK_DELAY)

    async def send_once(
        self,
        send: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]],
        **record: Any,
    ) -> T:
        """Send the request once; on an unknown outcome, wait for its effect to show.

        ``record`` (what identifies the effect, e.g. its tag) is checkpointed durably with
        the time of sending, before the request goes out: a crash after it leaves both.
        """
        await self._context.checkpoint(**record, **{SENT_AT_KEY: time.time()})
        try:
            return await send()
        except OutcomeUnknown as exc:
            failure: StepError = exc
        self._context.log.warn(
            f"{failure.message}; the server may still be working on it: looking for "
            f"{self.what} for up to {self.window:g}s; the request is not sent again"
        )
        found, lookup_error = await self.look(find, self.window)
        if found is not None:
            return found
        raise self.unknown(failure, lookup_error)

    async def find_interrupted(self, find: Callable[[], Awaitable[T | None]]) -> T | None:
        """On resume: the interrupted attempt's effect, waiting for it while its request
        may still be in flight (less than a window since it was sent)."""
        saved = self._context.saved.get(SENT_AT_KEY)
        sent_at = float(saved) if isinstance(saved, int | float) else None
        window = min(self.window, RESUME_WINDOW)
        left = sent_at + window - time.time() if sent_at is not None else 0.0
        if sent_at is not None and left > 0:
            self._context.log.warn(
                f"the interrupted attempt sent its request {time.time() - sent_at:.0f}s "
                f"ago and the server may still be working on it: looking for {self.what} "
                f"for up to {left:.0f}s before sending it"
            )
        found, lookup_error = await self.look(find, max(left, 0.0))
        if lookup_error is not None:
            raise lookup_error
        return found

    def unknown(self, failure: StepError, lookup_error: StepError | None) -> StepError:
        """The handled error that ends a step whose effect cannot be known."""
        looked = (
            f"looking for {self.what} failed ({lookup_error.message})"
            if lookup_error is not None
            else f"{self.what} did not appear within {self.window:g}s"
        )
        return StepError(
            f"{failure.message}; {looked}. It may still appear: look for it before running "
            "this step again (`steprun resume` looks for it first and never sends the "
            "request twice)",
            type=OUTCOME_UNKNOWN,
            code=OUTCOME_UNKNOWN,
            status=failure.status,
            request_id=failure.request_id,
            step=self._context.step_id,
            extra={"look_for": self.look_for, "cause": failure.code},
        )


def describe(items: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in items.items())


__all__ = [
    "OUTCOME_UNKNOWN",
    "RESUME_WINDOW",
    "SENT_AT_KEY",
    "Settler",
    "describe",
    "settle_window",
]
