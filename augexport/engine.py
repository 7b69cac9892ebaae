"""Batching, worker processes, deterministic ordering, streaming into the sinks.

Order: sources are sorted by a seeded hash of their id (`--no-shuffle` keeps source order) and
cut into blocks of BLOCK_ITEMS sources. Inside a block the records are permuted by a generator of
(seed, block) and mixing partners are drawn from the block's other augmented copies. Blocks, not
batches, define the output, so `--batch-size` and `--workers` change nothing but speed. Memory is
bounded by the block and the tasks in flight, never by the dataset.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures as cf
import contextlib
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import pixel_share
from .errors import WorkerDied
from .mixing import Mixing, streams
from .options import default_workers
from .plan import CopyPlan
from .rng import example_rng, sort_key
from .sources import SourceItem
from .sources.array_items import source_order
from .stages.mix import pick_partner, wants_mix
from .worker import (
    Finished,
    Job,
    Partner,
    Renderer,
    Unit,
    UnitOut,
    init_worker,
    land_result,
    run_encodes,
    run_units,
    ship_finished,
)

BLOCK_ITEMS = 64

#: A finished block's deferred records, done in the main process (device.py): each (unit index in
#: the block, record index, finished pixels) goes back to a worker to be encoded and framed.
Finisher = Callable[[list[UnitOut]], list[tuple[int, int, Finished]]]


@dataclass
class Block:
    index: int
    start: int  # planned index of this block's first record
    units: list[Unit]
    order: list[tuple[int, int]]  # (unit index in block, copy) in output order


@dataclass
class Emitted:
    """One record in final order, handed to the sinks."""

    planned_index: int
    source_id: str
    copy: int
    label: int
    mixed: bool
    framed: bytes
    image: bytes | None


def order_items(items: Sequence[SourceItem], seed: int, shuffle: bool) -> Sequence[SourceItem]:
    """Sources by the seeded key (an array source's lazy rows sort their indices instead)."""
    if not shuffle:
        return items
    lazy = source_order(items, seed)
    return lazy if lazy is not None else sorted(items, key=lambda it: sort_key(seed, it.source_id))


def plan_blocks(items: Sequence[SourceItem], plan: CopyPlan, mix: Mixing | None, shuffle: bool) -> Iterator[Block]:
    """Cut the ordered items into blocks; decide record order and mixing partners per block."""
    seed = plan.seed
    start = 0
    for b, lo in enumerate(range(0, len(items), BLOCK_ITEMS)):
        chunk = items[lo : lo + BLOCK_ITEMS]
        copies = [plan.copies(it) for it in chunk]
        order = [(i, c) for i in range(len(chunk)) for c in copies[i]]
        if shuffle:
            perm = example_rng(seed, f"#block/{b}", 0, "order").permutation(len(order))
            order = [order[k] for k in perm]
        partners = _partners(chunk, copies, seed, mix) if mix is not None else [{} for _ in chunk]
        units = [Unit(it, copies[i], partners[i]) for i, it in enumerate(chunk)]
        yield Block(b, start, units, order)
        start += len(order)


def _partners(chunk: list[SourceItem], copies: list[tuple[int, ...]], seed: int,
              mix: Mixing) -> list[dict[int, list[Partner]]]:
    """Mixing partners of one block's augmented copies, per mix entry. The candidates of a copy are
    the block's augmented copies in (source, copy) order minus its own source's run; an index into
    that virtual list (prefix sums instead of a materialised list) keeps this linear in copies."""
    aug = [[c for c in cs if c > 0] for cs in copies]
    starts = [0]
    for a in aug:
        starts.append(starts[-1] + len(a))
    partners: list[dict[int, list[Partner]]] = [{} for _ in chunk]
    for i, item in enumerate(chunk):
        n_candidates = starts[-1] - len(aug[i])
        for c in aug[i]:
            for e, entry in enumerate(mix.entries):
                rng = example_rng(seed, item.source_id, c, streams(e)[0])
                if not wants_mix(rng, entry.p) or n_candidates == 0:
                    continue
                k = pick_partner(rng, n_candidates)
                k += len(aug[i]) if k >= starts[i] else 0
                j = bisect.bisect_right(starts, k) - 1
                partners[i].setdefault(c, []).append(Partner(e, chunk[j], aug[j][k - starts[j]]))
    return partners


def _batches(blocks: Iterator[Block], batch_size: int) -> Iterator[tuple[list[Block], list[Unit]]]:
    """Group units into tasks of `batch_size`; each task also carries the blocks it starts. A block
    with mixing partners is one task of its own, so its augmented copies are rendered once and
    reused as partners (a partner outside the task would be rendered again)."""
    pending: list[Unit] = []
    new_blocks: list[Block] = []
    for block in blocks:
        if any(u.partners for u in block.units):
            if pending or new_blocks:
                yield new_blocks, pending
                pending, new_blocks = [], []
            yield [block], list(block.units)
            continue
        new_blocks.append(block)
        for unit in block.units:
            pending.append(unit)
            if len(pending) == batch_size:
                yield new_blocks, pending
                pending, new_blocks = [], []
    if pending or new_blocks:
        yield new_blocks, pending


def block_records(block: Block, results: list[UnitOut]) -> Iterator[Emitted | UnitOut]:
    """Records of one finished block in output order; failed units are yielded as they are. The one
    block walk of both runners (the local engine and the Beam DoFn)."""
    by_copy = []
    for res in results:
        if res.error is not None:
            yield res
        by_copy.append({r.copy: r for r in res.records})
    for k, (i, c) in enumerate(block.order):
        rec = by_copy[i].get(c)
        if rec is not None:
            assert rec.pending is None, "a deferred record reached the sinks: no batch stage ran"
            yield Emitted(block.start + k, results[i].source_id, c, rec.label, rec.mixed, rec.framed, rec.image)


def blocks_after(blocks: Iterable[Block], last_written: int) -> Iterator[Block]:
    """The blocks that still hold records after planned index `last_written` (resume)."""
    return (b for b in blocks if b.start + len(b.order) > last_written + 1)


def run(blocks: Iterable[Block], job: Job, *, workers: int, batch_size: int,
        on_progress: Callable[[int], None] | None = None,
        finish_block: Finisher | None = None) -> Iterator[Emitted | UnitOut]:
    """Stream the records (and failed units) of `blocks` in final order; ordering never depends on
    workers or batches. `finish_block` renders a finished block's deferred records (the device
    path, device.py) while workers go on; their encoding is a second kind of worker task."""
    tasks = _batches(iter(blocks), max(1, batch_size))
    collect = _Collector(on_progress)
    pixel_share.sweep()  # what an export killed with its resource tracker left in /dev/shm
    if workers <= 1:
        renderer = Renderer(job)
        for new_blocks, units in tasks:
            for block, got in collect(new_blocks, renderer.process(units)):
                if finish_block is not None:
                    slots = finish_block(got)
                    _place(got, slots, renderer.encode_finished([f for _, _, f in slots]))
                yield from block_records(block, got)
        return

    yield from _run_pool(tasks, collect, job, workers, batch_size, finish_block)


class _Collector:
    """Task results -> finished blocks, in order (units arrive in order, so each result belongs to
    the oldest unfinished block)."""

    def __init__(self, on_progress: Callable[[int], None] | None) -> None:
        self.open: collections.deque[tuple[Block, list[UnitOut]]] = collections.deque()
        self.on_progress = on_progress

    def __call__(self, new_blocks: list[Block], outs: list[UnitOut]) -> Iterator[tuple[Block, list[UnitOut]]]:
        for block in new_blocks:
            self.open.append((block, []))
        for out in outs:
            for block, got in self.open:
                if len(got) < len(block.units):
                    got.append(out)
                    break
        if self.on_progress and outs:
            self.on_progress(len(outs))
        while self.open and len(self.open[0][1]) == len(self.open[0][0].units):
            yield self.open.popleft()


def _place(got: list[UnitOut], slots: list[tuple[int, int, Finished]], records: list[Any]) -> None:
    for (i, k, _), rec in zip(slots, records, strict=True):
        got[i].records[k] = rec


@dataclass
class _Finishing:
    """A block whose records are being encoded by the workers (device path), or ready."""

    block: Block
    got: list[UnitOut]
    parts: list[tuple[list[tuple[int, int, Finished]], cf.Future[list[Any]]]]

    def done(self) -> bool:
        return all(f.done() for _, f in self.parts)

    def records(self) -> Iterator[Emitted | UnitOut]:
        for slots, fut in self.parts:
            _place(self.got, slots, fut.result())
        return block_records(self.block, self.got)


def _run_pool(tasks: Iterator[tuple[list[Block], list[Unit]]], collect: _Collector, job: Job, workers: int,
              batch_size: int, finish_block: Finisher | None) -> Iterator[Emitted | UnitOut]:
    """Tasks through a pool of worker processes, at most 3 per worker in flight. Finished blocks
    wait in `finishing` (in order) while their encode tasks run."""
    owner = pixel_share.new_owner()
    try:
        with _opencv_serial():
            yield from _pool_loop(_pool_context(), tasks, collect, job, workers, batch_size, finish_block, owner)
    except OSError as exc:  # the pool's own pipes and segments, never OUT (the sinks write between yields)
        raise WorkerDied(f"the worker processes could not be started or their results not read "
                         f"({exc.strerror or exc}); finished shards were kept: rerun with --resume, or with "
                         "--workers 1 to render in this process") from None
    finally:  # results a stopped pool never delivered would hold /dev/shm until this process exits
        pixel_share.remove_owner(owner)


def _pool_context() -> Any:
    method = worker_start_method()
    if method == "fork":  # started now, so that the workers share it (a spawned worker is handed it)
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    return mp.get_context(method)


@contextlib.contextmanager
def _opencv_serial() -> Iterator[None]:
    """OpenCV single-threaded in this process while the pool runs: `setNumThreads(1)` ends the
    threads of its pool, which the pipeline's dry run (or a caller) may have started and which
    would make the workers spawn; the workers render, not this process. Its thread count is put
    back afterwards (the pool starts again at OpenCV's next parallel call)."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _unguarded_script_hint(ctx: Any) -> str:
    """A spawned worker imports the caller's main script again: one that calls augexport at its top
    level, with no `if __name__ == "__main__":` guard, kills every worker as it starts."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if ctx.get_start_method() != "spawn" or not getattr(main, "__file__", None) or \
            (spec is not None and spec.name.startswith("augexport")) or \
            os.path.basename(main.__file__) == "augexport":  # type: ignore[union-attr]  # the CLI itself
        return ""
    return (f", or {os.path.basename(main.__file__)} calls augexport at its top level: spawned workers import it "  # type: ignore[union-attr]
            'again, so put the call under `if __name__ == "__main__":`')


def in_spawned_bootstrap() -> bool:
    """Whether this process is a spawned worker still importing its parent's main script (what
    multiprocessing itself checks before refusing to start processes there)."""
    import multiprocessing

    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def worker_start_method() -> str:
    """"fork" where forking this process is safe, else "spawn".

    A forked worker starts with the main process's modules already imported; a spawned one starts
    a new interpreter and imports numpy, augexport and the stages' libraries again (~0.25-0.3 s of
    every export's wall time here, for two workers). But a fork copies only the thread that calls
    it: a lock another thread holds at that moment stays held in the child for good. So workers
    are forked only on Linux and only while this process runs no other thread, as the CLI's main
    process does (`augexport.__main__` gives numpy's BLAS one thread there; `_opencv_serial`
    ends OpenCV's pool first), and spawned where anything else runs one: TensorFlow, an object
    store's I/O loop, a BLAS thread pool, a caller's own threads. A worker's output is the same
    either way."""
    if sys.platform != "linux":
        return "spawn"
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return "spawn"
    return "fork" if threads == 1 else "spawn"


def _pool_loop(ctx: Any, tasks: Iterator[tuple[list[Block], list[Unit]]], collect: _Collector, job: Job,
               workers: int, batch_size: int, finish_block: Finisher | None, owner: str) -> Iterator[Emitted | UnitOut]:
    """`_run_pool`'s pool; its workers and its own shared-memory segments are tagged `owner`."""
    in_flight: collections.deque[tuple[list[Block], cf.Future[list[UnitOut]]]] = collections.deque()
    finishing: collections.deque[_Finishing] = collections.deque()
    limit = workers * 3
    submitted = 0
    threads = max(1, default_workers() // workers)  # default_workers(): the cores this process may use
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                initargs=(job, os.getpid(), threads, owner)) as pool:

        def submit(fn: Callable[[Any], Any], arg: Any) -> cf.Future[Any]:
            nonlocal submitted
            with _workers_start_quiet(submitted < workers):  # a submit may start workers
                fut = pool.submit(fn, arg)
            submitted += 1
            return fut

        def absorb(new_blocks: list[Block], outs: list[UnitOut], wait: bool) -> Iterator[Emitted | UnitOut]:
            for block, got in collect(new_blocks, outs):
                slots = finish_block(got) if finish_block is not None else []
                size = max(1, min(batch_size, -(-len(slots) // workers)))  # spread over the workers
                parts = [(slots[i:i + size], submit(run_encodes, ship_finished([f for _, _, f in slots[i:i + size]], owner)))
                         for i in range(0, len(slots), size)]
                finishing.append(_Finishing(block, got, parts))
            while finishing and (wait or finishing[0].done()):
                yield from finishing.popleft().records()

        try:
            for new_blocks, units in tasks:
                in_flight.append((new_blocks, submit(run_units, units)))
                while len(in_flight) >= limit:
                    nb, fut = in_flight.popleft()
                    yield from absorb(nb, land_result(fut.result()), False)
            while in_flight:
                nb, fut = in_flight.popleft()
                yield from absorb(nb, land_result(fut.result()), False)
            yield from absorb([], [], True)
        except cf.process.BrokenProcessPool:
            _stop(pool)
            raise WorkerDied("a worker process died (out of memory, or killed by a signal"
                             f"{_unguarded_script_hint(ctx)}); finished shards were kept: rerun the same command "
                             "with --resume") from None
        except BaseException:
            _stop(pool)
            raise


@contextlib.contextmanager
def _workers_start_quiet(active: bool) -> Iterator[None]:
    """Start workers with SIGINT ignored: Python then never installs its KeyboardInterrupt handler
    in them, so a Ctrl-C while a worker is still starting prints no traceback (the main process
    stops the workers itself). SIGTERM is held back meanwhile: a forked worker starts with the
    main process's SIGTERM handler, which raises, until `init_worker` resets it and lets the
    signal through; here the main process takes a held SIGTERM once the workers are started. Only
    the main thread may change signal handlers. The main process's objects are also frozen out of
    the garbage collector meanwhile: a forked worker's collections then never walk (and so copy)
    the pages it shares with the main process, such as a large listing's."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    freeze = gc.get_freeze_count() == 0  # a caller's own freeze is left as it is
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a held SIGTERM raises here


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Stop the pool after an interrupt or a failure at once: queued tasks are dropped and running
    ones killed (their results are not used: finished shards are on disk and the journal says where
    to resume; workers write nothing themselves)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown clears it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:  # no public API for this before Python 3.14's terminate_workers
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join(timeout=5)


def plan_export(items: Sequence[SourceItem], plan: CopyPlan, mix: Mixing | None, shuffle: bool) -> Iterator[Block]:
    """The export's blocks: items in the seeded (or source) order, cut and planned."""
    return plan_blocks(order_items(items, plan.seed, shuffle), plan, mix, shuffle)
