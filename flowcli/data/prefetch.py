"""Work done ahead in background threads, handed out in order: decoding images while the network
runs, generating the next training batch while the current one trains. Torch and image decoding
release the GIL, so one extra thread keeps a second core busy without processes or pickling."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator


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
