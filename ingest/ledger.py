"""The status ledger of a materialise step, kept with the same part markers as every other job.

A downloaded (or decoded) source is materialised item by item: an Objaverse object, a
Pixabay image, a URL-list row, an SA-V video. :func:`run_items` sorts the items by id and
cuts them into chunks; chunk ``i`` is one task of an :mod:`imprint.parts` job whose
folder is ``<root>/status/``. A task runs the step over the chunk's items still to
attempt and writes its ledger part ``status/part-NNNNN.parquet`` (one row per item: its
:class:`~imprint.ingest.download.ItemStatus`, written atomically), then its marker
``status/_parts/part-NNNNN.json`` (counts, and the fingerprint of the chunk's item ids)
last. A rerun:

- skips a chunk whose marker matches (with ``retry_failed``, only one without failures);
- in a chunk it runs, attempts only the items without a status (and, with
  ``retry_failed``, the failed ones); ``ok``/``cached`` items are never attempted again,
  and a part keeps the statuses it held (items of an earlier, different list included).

So a kill loses at most the statuses of the chunks that were running; the files their
items wrote are still in place (the fetcher's cache: nothing is downloaded twice).

The ingest job reads the ledger back (:func:`ledger_drops`): each failed item is one
dropped item in ``DATA/records/<source>/report.json`` under its status, so ``seen = kept +
Σ dropped`` covers the whole job from the first request.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from imprint.config import fingerprint
from imprint.executor import Executor
from imprint.ingest.download import STATUS_FIELDS, DownloadError, ItemStatus, close_shared_clients, redact_url
from imprint.ingest.sources import Option
from imprint.io import read_json, write_json_atomic, write_parquet_atomic
from imprint.parts import is_done, marker_path, part_path, prepare_out_dir, read_marker, run_parts
from imprint.stats import Stats

log = logging.getLogger(__name__)

STATUS_DIR = "status"
REPORT = "report.json"
LEDGER = "imprint.ingest.ledger/1"  # in status/_job.json: this folder is a ledger

#: ``--retry-failed``: every source with a ledger declares this one option.
RETRY_FAILED = Option(("--retry-failed",), "retry the items that failed before", action="store_true", default=False)

LEDGER_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("url", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("attempts", pa.int32()), ("bytes", pa.int64()), ("path", pa.string()), ("seconds", pa.float64()),
    ("updated", pa.float64()), ("extra", pa.string()),
])


# what an optional column missing from an older ledger part reads as (a missing required one is an error)
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ItemStatus) if f.default is not MISSING}
_DEFAULTS["extra"] = "{}"


class Item(Protocol):
    """What the ledger needs of an item: a unique id and where it comes from (redacted in the ledger)."""

    @property
    def item_id(self) -> str: ...

    @property
    def url(self) -> str: ...


I = TypeVar("I", bound=Item)
Step = Callable[[Sequence[Any]], list[ItemStatus]]


# --------------------------------------------------------------------------------------------- the ledger


def write_status_part(status_dir: Path, index: int, statuses: Sequence[ItemStatus]) -> Path:
    """Write one chunk's statuses to ``status_dir/part-NNNNN.parquet`` atomically (a ledger lives under
    DATA/raw: a filesystem)."""
    path = part_path(status_dir, f"part-{index:05d}").local_path("a status ledger (under DATA/raw)")
    write_parquet_atomic(status_table(statuses), path)
    return path


def status_table(statuses: Sequence[ItemStatus]) -> pa.Table:
    """The ledger rows of ``statuses``, sorted by item id (built column by column: one pass per field)."""
    ordered = sorted(statuses, key=lambda s: str(s.item_id))
    columns = {name: [getattr(s, name) for s in ordered] for name in STATUS_FIELDS if name != "extra"}
    columns["extra"] = [ItemStatus.extra_json(s.extra) for s in ordered]
    return pa.Table.from_pydict(columns, schema=LEDGER_SCHEMA)


def statuses_of(table: pa.Table) -> list[ItemStatus]:
    """The statuses of a ledger table (optional columns it lacks take their defaults; columns it adds are
    ignored). Built column by column: a rerun reads the whole ledger back."""
    n = table.num_rows
    present = set(table.column_names)
    columns = [table.column(name).to_pylist() if name in present else [_DEFAULTS[name]] * n
               for name in STATUS_FIELDS]
    extra = STATUS_FIELDS.index("extra")
    columns[extra] = [json.loads(e) if e and e != "{}" else {} for e in columns[extra]]
    return [ItemStatus(*values) for values in zip(*columns)]


def load_status_parts(status_dir: Path) -> dict[int, list[ItemStatus]]:
    """The statuses of each ledger part, by part index (``{}`` when there is no ledger).

    An unreadable part (a foreign or damaged file) raises :class:`DownloadError`.
    """
    status_dir = Path(status_dir)
    parts: dict[int, list[ItemStatus]] = {}
    if not status_dir.is_dir():
        return parts
    for path in sorted(status_dir.glob("part-*.parquet")):
        try:
            index = int(path.stem.split("-", 1)[1])
            parts[index] = statuses_of(pq.read_table(path))
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise DownloadError(f"status ledger {path} is unreadable ({exc}); delete it and rerun: its items "
                                f"will be checked again (files already in place are not fetched)") from None
    return parts


def latest(parts: dict[int, list[ItemStatus]]) -> dict[str, ItemStatus]:
    """Every item's latest status over all parts (the latest ``updated`` wins where parts overlap)."""
    out: dict[str, ItemStatus] = {}
    for index in sorted(parts):
        for st in parts[index]:
            old = out.get(st.item_id)
            if old is None or st.updated >= old.updated:
                out[st.item_id] = st
    return out


def load_status(status_dir: Path) -> dict[str, ItemStatus]:
    """Every item's latest status from a ledger folder (``{}`` when there is none)."""
    return latest(load_status_parts(status_dir))


def is_ledger(status_dir: Path) -> bool:
    try:
        job = read_json(Path(status_dir) / "_job.json")
    except (OSError, ValueError):
        return False
    return isinstance(job, dict) and job.get("ledger") == LEDGER


def failed_items(root: Path) -> dict[str, ItemStatus]:
    """The items of the ledger under ``root`` whose latest status is a failure."""
    status_dir = Path(root) / STATUS_DIR
    if not is_ledger(status_dir):
        return {}
    return {k: st for k, st in load_status(status_dir).items() if not st.ok}


def ledger_drops(root: Path) -> tuple[Stats, dict[str, Any] | None]:
    """The failed items of a materialised folder as drops (one item each, reason = status, with the error),
    and the materialise report (``root/report.json``, without its failure list), or ``(empty, None)``."""
    stats = Stats()
    for item_id, st in sorted(failed_items(root).items()):
        stats.drop(st.status, item=item_id, error=st.error or st.status)
    try:
        report = read_json(Path(root) / REPORT)
    except (OSError, ValueError):
        report = None
    if isinstance(report, dict):
        report = {k: v for k, v in report.items() if k != "failures"}
        report["report"] = str(Path(root) / REPORT)
    else:
        report = None
    return stats, report


def select_items(items: Sequence[I], ledger: dict[str, ItemStatus], retry_failed: bool) -> list[I]:
    """The items to attempt: never attempted ones, plus failed ones when ``retry_failed``; never ok/cached ones."""
    todo = []
    for item in items:
        st = ledger.get(item.item_id)
        if st is None or (retry_failed and not st.ok):
            todo.append(item)
    return todo


# --------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class ItemTask:
    """One chunk: ``items`` to attempt, ``carried`` statuses of the part's other items (kept as they were)."""

    index: int
    ids: tuple[str, ...]  # every item of the chunk (the fingerprint)
    items: tuple[Any, ...]
    carried: tuple[ItemStatus, ...]
    status_dir: str
    fn: Step

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def fingerprint(self) -> str:
        return fingerprint(LEDGER, list(self.ids))


def run_item_task(task: ItemTask) -> dict[str, Any]:
    """Run one chunk through its step, write its ledger part, then its marker (last). Returns the marker."""
    t0 = time.perf_counter()
    statuses = list(task.fn(list(task.items))) if task.items else []
    by_id = {s.item_id: s for s in statuses}
    for item in task.items:  # a step that forgot an item: say so rather than lose it
        if item.item_id not in by_id:
            by_id[item.item_id] = ItemStatus(item.item_id, redact_url(item.url), "error",
                                             "the step returned no status for this item", updated=time.time())
    merged = {s.item_id: s for s in task.carried}
    merged.update(by_id)
    status_dir = Path(task.status_dir)
    write_status_part(status_dir, task.index, list(merged.values()))
    chunk = [merged[i] for i in task.ids if i in merged]
    marker = {"part": task.name, "fingerprint": task.fingerprint(), "rows": len(task.items),
              "items": len(task.ids), "failed": sum(not s.ok for s in chunk),
              "this_run": dict(sorted(Counter(by_id[it.item_id].status for it in task.items).items())),
              "seconds": round(time.perf_counter() - t0, 4)}
    write_json_atomic(marker_path(status_dir, task.name), marker)
    return marker


def _done(status_dir: Path, task: ItemTask, retry_failed: bool) -> bool:
    if not is_done(status_dir, task.name, task.fingerprint()):
        return False
    marker = read_marker(status_dir, task.name) or {}
    return not (retry_failed and marker.get("failed"))


def plan_tasks(items: Sequence[Item], status_dir: Path, fn: Step, chunk: int, retry_failed: bool) -> list[ItemTask]:
    """The chunks still to run, each with the items it attempts and the statuses it carries."""
    ordered = sorted(items, key=lambda it: it.item_id)
    ids = [it.item_id for it in ordered]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"item ids must be unique; {dup!r} appears more than once")
    old_parts = load_status_parts(status_dir)
    ledger = latest(old_parts)
    tasks = []
    for index, start in enumerate(range(0, len(ordered), chunk)):
        part = ordered[start:start + chunk]
        todo = select_items(part, ledger, retry_failed)
        todo_ids = {it.item_id for it in todo}
        # The rewritten part keeps what it held (items of an earlier, different list included) and this
        # chunk's other items' statuses: a ledger never forgets an item.
        carried = {s.item_id: s for s in old_parts.get(index, []) if s.item_id not in todo_ids}
        carried.update((it.item_id, ledger[it.item_id]) for it in part
                       if it.item_id not in todo_ids and it.item_id in ledger)
        task = ItemTask(index, tuple(it.item_id for it in part), tuple(todo), tuple(carried.values()),
                        str(status_dir), fn)
        if todo or not _done(status_dir, task, retry_failed):
            tasks.append(task)
    return tasks


def summarize(statuses: Iterable[ItemStatus]) -> dict[str, Any]:
    """Counts by status, plus the step's ``extra`` counts (``objects`` kept, ``dropped`` by reason)."""
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    objects = 0
    nbytes = 0
    for st in statuses:
        counts[st.status] += 1
        nbytes += st.bytes or 0
        objects += int(st.extra.get("objects", 0))
        dropped.update(st.extra.get("dropped", {}))
    return {"counts": dict(sorted(counts.items())), "bytes": nbytes, "objects": objects,
            "dropped": dict(sorted(dropped.items()))}


def run_items(items: Sequence[Item], root: Path, fn: Step, executor: Executor, chunk: int = 256, *,
              retry_failed: bool = False, label: str = "download", info: dict[str, Any] | None = None,
              started: float | None = None) -> dict[str, Any]:
    """Run the step ``fn`` over ``items`` in chunks on ``executor``, keeping the ledger ``root/status/``.

    ``fn`` gets a chunk's items to attempt and returns an :class:`ItemStatus` for each; it must be
    picklable for Ray (a module-level function or a frozen dataclass with ``__call__``). The report
    (``info`` first, then ``items``, ``attempted``, ``not_attempted``, ``counts`` over every item of
    the list, ``this_run`` over the items attempted now, ``objects``, ``dropped``, ``bytes``,
    ``failed_tasks``, ``failures``, ``seconds`` since ``started``) is written to ``root/report.json``
    and returned. Chunks that failed as a whole raise :class:`DownloadError` after it is written
    (their items stay unattempted: rerun).
    """
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    t0 = started if started is not None else time.perf_counter()
    root = Path(root)
    status_dir = root / STATUS_DIR
    prepare_out_dir(status_dir, {"ledger": LEDGER}, overwrite=False)
    tasks = plan_tasks(items, status_dir, fn, chunk, retry_failed)
    n_todo = sum(len(t.items) for t in tasks)
    log.info("[%s] %d items; %d already done%s, %d to attempt in %d task(s) on the %s executor", label, len(items),
             len(items) - n_todo, "" if retry_failed else " or failed (pass --retry-failed to retry failures)",
             n_todo, len(tasks), executor.name)
    try:
        ran = run_parts(executor, run_item_task, tasks, label, "items", lambda m: m["rows"], log.info)
    finally:
        close_shared_clients()  # the chunks run here (local executor) kept their connections for the next one
    failed = ran.failed
    this_run: Counter[str] = Counter()
    for task in tasks:
        marker = read_marker(status_dir, task.name)
        if task.name not in failed and marker is not None:
            this_run.update(marker["this_run"])
    final = load_status(status_dir)
    listed = [final[it.item_id] for it in sorted(items, key=lambda it: it.item_id) if it.item_id in final]
    total = summarize(listed)
    report = {
        **(info or {}),
        "items": len(items), "attempted": sum(this_run.values()), "not_attempted": len(items) - len(listed),
        "counts": total["counts"], "this_run": dict(sorted(this_run.items())), "objects": total["objects"],
        "dropped": total["dropped"], "bytes": total["bytes"],
        "failed_tasks": [{"task": k, "error": v} for k, v in sorted(failed.items())],
        "retried_tasks": ran.retried_list("task"),
        "failures": [{"item": s.item_id, "url": s.url, "status": s.status, "error": s.error}
                     for s in listed if not s.ok][:1000],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json_atomic(root / REPORT, report)
    log.info("[%s] %s%s", label, ", ".join(f"{k} {v}" for k, v in report["counts"].items()) or "no items",
             f"; {len(failed)} task(s) failed" if failed else "")
    if failed:
        raise DownloadError(f"{len(failed)} task(s) failed as a whole: {', '.join(sorted(failed))}; their errors "
                            f"are in {root / REPORT}; run the same command again to retry them")
    return report
