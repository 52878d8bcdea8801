"""Does a tritonclient gRPC call let other greenlets run? Run as ``python -m tests.loadtests.gevent_probe URL CLIP
[--no-init]``: prints JSON with the call's seconds and how often a 50 ms ticker greenlet ran during it.

Without ``--no-init`` it imports the locustfile (Locust's monkey patching and its ``init_gevent()``), as a Locust run
does; with it, only Locust's monkey patching (the control: the call should then block the ticker).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if "--no-init" in sys.argv:
    import locust  # noqa: F401  (monkey patching only)
else:
    import loadtests.locustfile  # noqa: F401  (monkey patching and grpc's gevent mode)

import gevent
import tritonclient.grpc as grpcclient

from deepfake_core.ensemble_contract import ENSEMBLE, ensemble_request

TICK_S = 0.05


def main() -> None:
    url, clip = sys.argv[1], Path(sys.argv[2])
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            gevent.sleep(TICK_S)

    def call() -> tuple[float, float]:
        client = grpcclient.InferenceServerClient(url)
        inputs, outputs = ensemble_request(grpcclient, clip.read_bytes())
        start = time.perf_counter()
        client.infer(ENSEMBLE, inputs, outputs=outputs, client_timeout=300)
        end = time.perf_counter()
        client.close()
        return start, end

    tick = gevent.spawn(ticker)
    gevent.sleep(0)  # the ticker's first tick
    start, end = gevent.spawn(call).get()
    tick.kill()
    # The first tick of the call's window can come from before it; count the ones strictly inside.
    print(json.dumps({"call_s": end - start, "ticks_during": sum(1 for t in ticks if start < t < end)}))


if __name__ == "__main__":
    main()
