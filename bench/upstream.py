"""The benchmark's upstream in its own process: python -m bench.upstream PORT [CHUNK_DELAY]"""

from __future__ import annotations

import signal
import sys
import threading

from tests.upstream import FakeUpstream

if __name__ == "__main__":
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    upstream = FakeUpstream("bench", chunks=8, chunk_delay=delay, record=False)
    upstream.port = int(sys.argv[1])
    upstream.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    upstream.stop()
