"""Generation token by token, for streamed answers (and, read to the end, for whole ones).

``generate`` runs on a thread of its own with a streamer (transformers' ``BaseStreamer``)
that hands each new token, with the log probabilities it was drawn from, to the reader
through a small queue. The queue is bounded, so generation never runs far ahead of a
reader; when the reader stops (the answer is complete, a stop string appeared, the
client went away), a stopping criterion ends ``generate`` at its next step.

:class:`Pieces` turns tokens into the text pieces an answer shows: a character split
over several byte tokens shows once it is whole, and text that may be the beginning of
a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..model import TokenChoice

# How many tokens generation may run ahead of the reader.
AHEAD = 2
_WAKE_SECONDS = 0.1  # how often a blocked generation thread looks whether to give up


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -9999.0


class Pieces:
    """Generated token ids → the :class:`TokenChoice` pieces an answer shows, in order."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        eos: set[int],
        stops: tuple[str, ...],
        top_logprobs: int,
    ) -> None:
        self.decode = decode
        self.eos = eos
        self.stops = tuple(s for s in stops if s)
        self.top_logprobs = top_logprobs
        self.ids: list[int] = []
        self.shown = ""  # the decoded text of the whole characters so far
        self.text = ""  # what was released plus what is held back
        self.released = 0  # characters of ``text`` already released
        self.held: deque[TokenChoice] = deque()
        self.finish_reason: str | None = None  # set once the answer is complete

    def add(self, token: int, logprobs: Any) -> list[TokenChoice]:
        """The pieces that can be shown once ``token`` is generated."""
        if token in self.eos:
            self.finish_reason = "stop"
            return self._release(len(self.text))
        self.ids.append(token)
        text = self.decode(self.ids)
        piece = "" if text.endswith("\ufffd") else text[len(self.shown) :]
        if piece:
            self.shown = text
        self.held.append(TokenChoice(piece, _finite(float(logprobs[token])), self._top(logprobs)))
        self.text += piece
        cut = min((i for s in self.stops if (i := self.text.find(s)) != -1), default=None)
        if cut is not None:
            self.finish_reason = "stop"
            return self._release(cut, cut=True)
        hold = max(
            (k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])),
            default=0,
        )
        return self._release(len(self.text) - hold)

    def end(self, generated: int, limit: int) -> list[TokenChoice]:
        """What is still held back, once generation ended without a stop."""
        if self.finish_reason is None:
            # Shorter than the limit without an end of turn: generation stopped itself.
            self.finish_reason = "length" if generated >= limit else "stop"
        return self._release(len(self.text))

    def _release(self, upto: int, *, cut: bool = False) -> list[TokenChoice]:
        out = []
        while self.held:
            choice = self.held[0]
            if self.released + len(choice.token) > upto:
                if cut and self.released < upto:
                    part = choice.token[: upto - self.released]
                    out.append(TokenChoice(part, choice.logprob, choice.top))
                    self.released = upto
                break
            out.append(self.held.popleft())
            self.released += len(choice.token)
        if cut:
            self.held.clear()
        return out

    def _top(self, logprobs: Any) -> list[tuple[str, float]]:
        if not self.top_logprobs:
            return []
        import torch

        values, indices = torch.topk(logprobs, self.top_logprobs)
        return [
            (self.decode([int(i)]), float(v))
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]


def token_queue(stop: threading.Event) -> Any:
    """A streamer for ``generate`` that queues ``(token id, log probabilities)`` pairs.

    The log probabilities come from the raw logits of the step that drew the token (as
    ``output_logits`` gives them): :meth:`record` is a forward hook on the model that
    keeps each step's last row until the streamer receives that step's token.
    """
    import torch
    from transformers.generation.streamers import BaseStreamer

    class TokenQueue(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
            self.rows: deque[Any] = deque()
            self.prompt_seen = False
            self.generated = 0

        def record(self, module: Any, args: Any, output: Any) -> None:
            self.rows.append(output.logits[0, -1].detach().float())

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate streams the prompt's ids first
                self.prompt_seen = True
                return
            row = self.rows.popleft()
            self.generated += 1
            self.offer((int(value.reshape(-1)[0]), torch.log_softmax(row, dim=-1)))

        def end(self) -> None:
            self.offer(None)

        def offer(self, item: Any) -> None:
            while not stop.is_set():
                try:
                    self.items.put(item, timeout=_WAKE_SECONDS)
                    return
                except queue.Full:
                    continue

        def fail(self, exc: BaseException) -> None:
            self.offer(exc)

    return TokenQueue()


def stopped_by(stop: threading.Event) -> Any:
    """A stopping criterion that ends ``generate`` once ``stop`` is set."""
    import torch
    from transformers import StoppingCriteria

    class Stopped(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return Stopped()


def run(start: Callable[[Any, Any], None], pieces: Pieces, limit: int) -> Iterator[TokenChoice]:
    """The pieces of one generation as its tokens come; ``start(streamer, criterion)``
    runs ``generate`` (on the thread this starts). Closing the iterator ends generation."""
    stop = threading.Event()
    streamer = token_queue(stop)

    def work() -> None:
        try:
            start(streamer, stopped_by(stop))
        except BaseException as exc:  # handed to the reader, which raises it
            streamer.fail(exc)
        else:
            streamer.end()

    thread = threading.Thread(target=work, name="steprun-generate", daemon=True)
    thread.start()
    try:
        while pieces.finish_reason is None:
            item = streamer.items.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield from pieces.add(*item)
        if pieces.finish_reason is None:
            yield from pieces.end(streamer.generated, limit)
    finally:
        stop.set()
        thread.join()


__all__ = ["AHEAD", "Pieces", "run", "stopped_by", "token_queue"]
