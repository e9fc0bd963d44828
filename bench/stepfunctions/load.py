"""Runs workflows on Nimbus through boto3's `stepfunctions` client and prints what they did.

    load.py flow URL N C   N executions of the 3-step workflow (an EXPRESS state machine,
                           StartSyncExecution: start to result in one call), C at once:
                           prints `executions_per_second p50_ms p99_ms`
    load.py map URL ITEMS  one execution of the Map workflow over ITEMS items: prints
                           `items_per_second seconds`
"""
import concurrent.futures
import json
import statistics
import sys
import threading
import time

import boto3
from botocore.config import Config

kind, url = sys.argv[1], sys.argv[2]
local = threading.local()
MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:"


def client():
    if not hasattr(local, "client"):
        # StartSyncExecution goes to a `sync-` host by default: not with a local endpoint.
        local.client = boto3.client(
            "stepfunctions", endpoint_url=url, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, max_pool_connections=2,
                          read_timeout=900, inject_host_prefix=False),
        )
    return local.client


def run(machine, payload):
    r = client().start_sync_execution(stateMachineArn=MACHINE + machine, input=json.dumps(payload))
    assert r["status"] == "SUCCEEDED", r
    return json.loads(r["output"])


if kind == "flow":
    n, c = int(sys.argv[3]), int(sys.argv[4])

    def timed(i):
        t = time.perf_counter()
        out = run("flow", {"i": i})
        assert out == {"i": i}, out
        return time.perf_counter() - t

    with concurrent.futures.ThreadPoolExecutor(c) as pool:
        list(pool.map(timed, range(min(n, 2 * c))))  # warm up
        t0 = time.perf_counter()
        latencies = sorted(pool.map(timed, range(n)))
        elapsed = time.perf_counter() - t0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{n / elapsed:.1f} {statistics.median(latencies) * 1000:.1f} {p99 * 1000:.1f}")
else:
    items = int(sys.argv[3])
    run("map", {"items": list(range(10))})  # warm up
    t0 = time.perf_counter()
    out = run("map", {"items": list(range(items))})
    elapsed = time.perf_counter() - t0
    assert out == {"count": items}, out
    print(f"{items / elapsed:.1f} {elapsed:.2f}")
