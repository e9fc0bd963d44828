"""Drives the Node.js durable workflow `nflow` (tests/fixtures/durable/flow.js) with boto3's
durable execution calls and prints what it saw as JSON.

Usage: python boto3_durable_node.py URL"""
import json
import sys
import time

import boto3
from botocore.config import Config

url = sys.argv[1]
lam = boto3.client(
    "lambda", endpoint_url=url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
)


def start(name, event):
    return lam.invoke(
        FunctionName="nflow", InvocationType="Event", DurableExecutionName=name,
        Payload=json.dumps(event),
    )["DurableExecutionArn"]


def until(arn, done, limit=60):
    deadline = time.time() + limit
    while True:
        e = lam.get_durable_execution(DurableExecutionArn=arn)
        if done(e) or time.time() > deadline:
            return e
        time.sleep(0.1)


def history(arn):
    return lam.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=True)[
        "Events"
    ]


def ended(e):
    return e["Status"] != "RUNNING"


out = {}
arn = start("node-1", {"order": "n-1", "callback": True})
callback = None
deadline = time.time() + 60
while callback is None and time.time() < deadline:
    for ev in history(arn):
        if ev["EventType"] == "CallbackStarted":
            callback = ev["CallbackStartedDetails"]["CallbackId"]
    time.sleep(0.1)
out["callback_seen"] = callback is not None
if callback:
    lam.send_durable_execution_callback_success(CallbackId=callback, Result=b'"approved"')
done = until(arn, ended)
out["callback"] = {
    "status": done["Status"],
    "result": json.loads(done.get("Result") or "null"),
    "error": done.get("Error"),
    "events": sorted({e["EventType"] for e in history(arn)}),
}
arn = start("node-2", {"order": "n-2", "fail_step": True})
done = until(arn, ended)
out["failing"] = {"status": done["Status"], "error": done.get("Error")}
print(json.dumps(out))
