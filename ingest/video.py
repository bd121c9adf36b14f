"""Reading videos front to back, so that frame *k* is exactly the *k*-th frame of the stream.

Annotations made on a video's frames (SA-V's masklets on every 4th frame) refer to the frames in the
order the stream decodes to; the owners' own tool (``sav_dataset/utils/sav_utils.py``) reads them with
OpenCV from the start and takes ``frames[::4]``. Random access by seeking can land on another frame near a
keyframe (``decord``'s ``get_batch`` returns frames two off in MPEG-4 with B-frames, open-GOP H.264 and
HEVC, and public reports say the same), which would misalign every mask of the video without an error.
So :class:`SequentialVideo` never seeks: it decodes every frame (``grab``) and converts only those asked for
(``retrieve``), the same decoder and order as the owners' tool.

:func:`check_frames` is the proof on real files: it compares stored frames (the JPEGs a materialise
step wrote) with a fresh sequential decode, each against its neighbours, and reports those that match
another frame better (with the offset) or match none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from imprint.stats import Drop

#: a stored frame matches decoded frame k when k is the closest of its neighbours (within TIE of the
#: closest, for still scenes) and its mean absolute difference is at most MAX_ERROR (JPEG at quality >= 90
#: stays far below it)
MAX_ERROR = 8.0
TIE = 0.5


class SequentialVideo:
    """A video read once from its first frame (OpenCV's FFmpeg backend, as the SA-V tools read it).

    ``first`` is frame 0 (BGR), decoded on opening, so that a file that is not a video fails at once
    (``corrupt_video``); ``container_frames`` is the frame count the container declares (0 if none).
    """

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise Drop("missing_file", f"{path} does not exist")
        if Path(path).stat().st_size == 0:
            raise Drop("empty_file", f"{path} is 0 bytes")
        self.path = path
        self._cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise Drop("corrupt_video", f"{path} cannot be opened as a video")
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise Drop("corrupt_video", f"{path}: no frame decodes (the video is empty or broken)")
        self.first: np.ndarray = first
        self.container_frames = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.decoded = 1  # frames decoded so far

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded frames."""
        return self.first.shape[1], self.first.shape[0]

    def frames(self, wanted: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, BGR frame k)`` for each wanted index, in order, decoding front to back (once: call it once).

        Stops at the last wanted frame, or where the stream ends (``decoded`` then says how far it got).
        """
        todo = sorted(set(wanted))
        if todo and todo[0] == 0:
            yield 0, self.first
        want = set(todo)
        last = todo[-1] if todo else -1
        k = self.decoded
        while k <= last:
            if not self._cap.grab():
                break
            self.decoded = k + 1
            if k in want:
                ok, bgr = self._cap.retrieve()
                if not ok or bgr is None:
                    raise Drop("corrupt_video", f"{self.path}: frame {k} decodes to nothing")
                yield k, bgr
            k += 1

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> SequentialVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class FrameCheck:
    """Stored frames of one video to compare with its sequential decode: ``[(frame index, image path)]``."""

    video: str
    frames: tuple[tuple[int, str], ...]
    window: int = 4  # neighbours compared on each side


@dataclass
class FrameVerdict:
    frame: int
    image: str
    error: float | None  # mean absolute difference with decoded frame `frame` (None: the stream ends first)
    best_offset: int | None  # the neighbour that matches best, relative to `frame`
    best_error: float | None
    ok: bool
    reason: str = ""
    errors: dict[int, float] = field(default_factory=dict)


def check_frames(check: FrameCheck) -> dict[str, Any]:
    """Compare each stored frame with decoded frames ``k - window .. k + window`` of a sequential decode."""
    wanted = {j for k, _ in check.frames for j in range(max(0, k - check.window), k + check.window + 1)}
    decoded: dict[int, np.ndarray] = {}
    try:
        with SequentialVideo(check.video) as video:
            for j, bgr in video.frames(wanted):
                decoded[j] = bgr
    except Drop as drop:
        return {"video": check.video, "error": f"{drop.reason}: {drop.detail}", "frames": []}
    verdicts = []
    for k, image in check.frames:
        stored = cv2.imread(image, cv2.IMREAD_COLOR)
        if stored is None:
            verdicts.append(FrameVerdict(k, image, None, None, None, False, "the stored frame cannot be read"))
            continue
        errors = {j - k: float(np.abs(stored.astype(np.int16) - bgr.astype(np.int16)).mean())
                  for j, bgr in decoded.items() if abs(j - k) <= check.window and bgr.shape == stored.shape}
        verdicts.append(_verdict(k, image, errors))
    return {"video": check.video, "error": None, "frames": [asdict(v) for v in verdicts]}


def _verdict(k: int, image: str, errors: dict[int, float]) -> FrameVerdict:
    if 0 not in errors:
        return FrameVerdict(k, image, None, None, None, False, f"the video has no frame {k} of that size",
                            errors)
    best = min(errors, key=lambda d: (errors[d], abs(d)))
    ok = errors[0] <= errors[best] + TIE and errors[0] <= MAX_ERROR
    reason = "" if ok else (f"matches frame {k + best} better" if errors[best] + TIE < errors[0]
                            else f"differs from every frame near {k}")
    return FrameVerdict(k, image, round(errors[0], 3), best, round(errors[best], 3), ok, reason,
                        {d: round(e, 3) for d, e in sorted(errors.items())})
