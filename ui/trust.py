"""The explanation scoreboard for the Trust page: run in the background, cached per model.

A board depends only on the model and the settings, so a finished one is kept
for every visitor (`_BOARDS`, at most `MAX_BOARDS`); a run in progress belongs
to the session that started it. Scoring never blocks the page: a fragment
polls the job and shows its progress.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import cnnviz
from ui.training import BackgroundJob

MAX_BOARDS = 16
_BOARDS: OrderedDict[tuple, Any] = OrderedDict()
_LOCK = threading.Lock()


def board_key(model_key: str, images: int, sweep: bool) -> tuple:
    return (model_key, int(images), bool(sweep))


def cached_board(key: tuple):
    """The finished board for `key`, or None."""
    with _LOCK:
        board = _BOARDS.get(key)
        if board is not None:
            _BOARDS.move_to_end(key)
        return board


def _keep(key: tuple, board) -> None:
    with _LOCK:
        _BOARDS[key] = board
        _BOARDS.move_to_end(key)
        while len(_BOARDS) > MAX_BOARDS:
            _BOARDS.popitem(last=False)


@dataclasses.dataclass(kw_only=True)
class ScoringJob(BackgroundJob):
    """One `cnnviz.score_explanations` run: every method at the default layer, or at the last three."""

    model: Any
    key: tuple
    images: int
    sweep: bool
    done: int = 0
    total: int = 0
    current: str = ""
    board: Any = None

    failure = "Scoring failed"
    out_of_memory = "Out of memory: score fewer images."

    def work(self) -> None:
        # The default layer alone, or the last three (None); a model with no conv map gets the methods that
        # read none either way (`score_explanations` leaves the others out).
        layers = None if self.sweep else _default_layer(self.model)

        def progress(done: int, total: int, label: str) -> None:
            self.done, self.total, self.current = done, total, label
            if self.stop_event.is_set() or (self.watched is not None and not self.watched()):
                raise _Stopped

        try:
            self.board = cnnviz.score_explanations(
                self.model, self.data, layers=layers, images=self.images, progress=progress
            )
        except _Stopped:
            self.error = "Stopped."
            return
        _keep(self.key, self.board)


class _Stopped(Exception):
    """Raised from the progress callback to end a run nobody wants any more."""


def _default_layer(model) -> list[str] | None:
    try:
        return [cnnviz.default_cam_layer(model)]
    except cnnviz.ConfigError:  # no conv map: the layer methods are left to fail with their own message
        return None
