"""A stream produced under a lock by a worker thread, so that a reader who walks away cannot keep the lock."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

_END = object()


def locked_stream(lock: threading.Lock, stream: Callable[[], Iterator[str]]) -> Iterator[str]:
    """The texts of `stream()`, produced under `lock` by a worker thread, handed to the reader in order.

    A generator that held the lock across its yields would keep it for as long as a reader that stopped
    without closing it (a browser tab closed mid-answer) keeps the generator alive, and every later call
    would wait for ever. The worker instead runs the stream to its end (it is bounded) or until the reader
    closes this one, and then lets the lock go.
    """
    texts: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        try:
            with lock:
                produced = stream()
                try:
                    for text in produced:
                        texts.put(text)
                        if stop.is_set():
                            break
                finally:
                    close = getattr(produced, "close", None)
                    if close is not None:
                        close()  # the backend aborts its request
        except BaseException as error:  # noqa: BLE001 (handed to the reader, raised there)
            texts.put(error)
        finally:
            texts.put(_END)

    threading.Thread(target=produce, name="chat-stream", daemon=True).start()
    try:
        while (item := texts.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
