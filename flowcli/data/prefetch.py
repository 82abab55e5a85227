"""Work done ahead in background threads, handed out in order: decoding images while the network
runs, generating the next training batch while the current one trains. Torch and image decoding
release the GIL, so one extra thread keeps a second core busy without processes or pickling."""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def prefetch(load: Callable[[int], object], count: int, *, depth: int, workers: int,
             name: str = "flowcli-prefetch") -> Iterator[Future]:
    """Futures of load(0) .. load(count - 1) in order, keeping up to `depth` submitted ahead.

    With workers=1 the calls also run one after another in index order, so a `load` that draws from
    shared random state gives exactly the sequence it would give inline. Leaving the loop early
    cancels what has not started and waits for what has.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    ahead: deque[Future] = deque()
    try:
        submitted = 0
        while submitted < count or ahead:
            while submitted < count and len(ahead) < depth:
                ahead.append(pool.submit(load, submitted))
                submitted += 1
            yield ahead.popleft()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_ahead(items: Iterable[T], *, depth: int, name: str = "flowcli-read-ahead") -> Iterator[T]:
    """The items of an iterable that can only be read in order (a video's frames), produced by one
    background thread up to `depth` ahead. Its exceptions are raised here, in order; leaving the loop
    early stops the thread (and closes a generator in it, so a file it holds is closed)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(slots, (True, item), stop):
                    break
            else:
                _put(slots, (False, None), stop)
        except BaseException as exc:  # handed to the reader, which raises it
            _put(slots, (False, exc), stop)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            more, value = slots.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # free a slot for a producer blocked on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _put(slots, entry, stop) -> bool:
    """Put unless the reader has left; False when it has."""
    while not stop.is_set():
        try:
            slots.put(entry, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
