"""data.prefetch.read_ahead: items in order from a background thread, errors in their place, early exit."""

from __future__ import annotations

import threading

import pytest

from flowcli.data.prefetch import read_ahead


def test_items_come_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(20):
            threads.append(threading.current_thread())
            yield i

    assert list(read_ahead(items(), depth=3)) == list(range(20))
    assert threading.current_thread() not in threads


def test_an_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("frame 3 is damaged")

    got = []
    with pytest.raises(ValueError, match="frame 3 is damaged"):
        for item in read_ahead(items(), depth=1):
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_thread_and_closes_the_generator():
    closed = threading.Event()

    def items():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    for item in read_ahead(items(), depth=2, name="test-read-ahead"):
        if item == 3:
            break
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "test-read-ahead"]
