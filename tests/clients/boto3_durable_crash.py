"""The two halves of the durable crash test, with boto3 against Nimbus's durable execution API.

    python boto3_durable_crash.py URL start N   starts N executions of `flow` (a third of them
                                                 wait for a callback), prints their ARNs
    python boto3_durable_crash.py URL finish     answers every callback still waiting, waits until
                                                 every execution ended, prints each one's status
                                                 and how often each of its steps succeeded"""
import collections
import json
import sys
import time

import boto3
from botocore.config import Config

url, mode = sys.argv[1], sys.argv[2]
lam = boto3.client(
    "lambda", endpoint_url=url, region_name="us-east-1", config=Config(retries={"max_attempts": 3})
)


def executions():
    out, marker = [], None
    while True:
        kw = {"FunctionName": "flow", "MaxItems": 100}
        if marker:
            kw["Marker"] = marker
        page = lam.list_durable_executions_by_function(**kw)
        out += page["DurableExecutions"]
        marker = page.get("NextMarker")
        if not marker:
            return out


def history(arn):
    events, marker = [], None
    while True:
        kw = {"DurableExecutionArn": arn, "MaxItems": 1000}
        if marker:
            kw["Marker"] = marker
        page = lam.get_durable_execution_history(**kw)
        events += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            return events


if mode == "start":
    n = int(sys.argv[3])
    arns = []
    for i in range(n):
        event = {"order": f"o-{i}", "wait": 2, "callback": i % 3 == 0}
        r = lam.invoke(
            FunctionName="flow",
            InvocationType="Event",
            DurableExecutionName=f"crash-{i}",
            Payload=json.dumps(event),
        )
        arns.append(r["DurableExecutionArn"])
    print(json.dumps(arns))
elif mode == "finish":
    deadline = time.time() + 240
    answered = set()
    while True:
        running = [e for e in executions() if e["Status"] == "RUNNING"]
        if not running or time.time() > deadline:
            break
        for e in running:
            for ev in history(e["DurableExecutionArn"]):
                if ev["EventType"] == "CallbackStarted":
                    cb = ev["CallbackStartedDetails"]["CallbackId"]
                    if cb not in answered:
                        lam.send_durable_execution_callback_success(CallbackId=cb, Result=b'"ok"')
                        answered.add(cb)
        time.sleep(0.5)
    out = {}
    for e in executions():
        steps = collections.Counter(
            ev.get("Name") for ev in history(e["DurableExecutionArn"])
            if ev["EventType"] == "StepSucceeded"
        )
        out[e["DurableExecutionName"]] = {"status": e["Status"], "steps": steps}
    print(json.dumps(out))
