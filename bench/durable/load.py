"""Runs N executions of the benchmark workflow with C at once and prints
`executions_per_second p50_ms p99_ms` (end-to-end: start to result).

    load.py nimbus URL N C [F]  Lambda Invoke (RequestResponse, SigV4) of the durable function F
                                (default `flow`)
    load.py restate URL N C     POST URL/flow/run on Restate's ingress"""
import concurrent.futures
import json
import statistics
import sys
import threading
import time
import urllib.request

kind, url, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
FUNCTION = sys.argv[5] if len(sys.argv) > 5 else "flow"
local = threading.local()


def nimbus_call(i):
    if not hasattr(local, "client"):
        import boto3
        from botocore.config import Config

        local.client = boto3.client(
            "lambda", endpoint_url=url, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, max_pool_connections=2, read_timeout=120),
        )
    r = local.client.invoke(FunctionName=FUNCTION, Payload=b"{}")
    body = json.loads(r["Payload"].read())
    assert body == {"sum": 6} and not r.get("FunctionError"), body


def restate_call(i):
    req = urllib.request.Request(
        f"{url}/flow/run", data=b"{}", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        body = json.loads(r.read())
    assert body == {"sum": 6}, body


call = nimbus_call if kind == "nimbus" else restate_call


def timed(i):
    t = time.perf_counter()
    call(i)
    return time.perf_counter() - t


with concurrent.futures.ThreadPoolExecutor(c) as pool:
    list(pool.map(timed, range(min(n, 2 * c))))  # warm up
    t0 = time.perf_counter()
    latencies = sorted(pool.map(timed, range(n)))
    elapsed = time.perf_counter() - t0
p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
print(f"{n / elapsed:.1f} {statistics.median(latencies) * 1000:.1f} {p99 * 1000:.1f}")
