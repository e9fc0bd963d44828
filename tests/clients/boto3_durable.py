"""Drives Nimbus's durable execution API with boto3 (the Lambda client's 2025-12-01
operations), configured only with endpoint_url and the credentials Nimbus issued. Runs the
`flow` durable function (tests/fixtures/durable/flow.py) through its patterns and prints what
it saw as JSON.

Usage: python boto3_durable.py URL"""
import json
import sys
import time

import boto3
import botocore.exceptions
from botocore.config import Config

url = sys.argv[1]
lam = boto3.client(
    "lambda", endpoint_url=url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
)


def error(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
    return None


def start(name, event):
    r = lam.invoke(
        FunctionName="flow",
        InvocationType="Event",
        DurableExecutionName=name,
        Payload=json.dumps(event),
    )
    return r["StatusCode"], r["DurableExecutionArn"]


def until(arn, done, limit=60):
    deadline = time.time() + limit
    while True:
        e = lam.get_durable_execution(DurableExecutionArn=arn)
        if done(e) or time.time() > deadline:
            return e
        time.sleep(0.1)


def ended(e):
    return e["Status"] != "RUNNING"


def events(arn):
    return lam.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=True)[
        "Events"
    ]


out = {}

# Steps and a wait, started asynchronously by name; the same name again is the same execution.
status, arn = start("order-1", {"order": "o-1", "wait": 2})
out["started"] = {"status": status, "arn": arn}
out["same_name"] = start("order-1", {"order": "o-1", "wait": 2})[1]
out["other_input"] = error(lambda: start("order-1", {"order": "o-2"}))
t0 = time.time()
done = until(arn, ended)
out["plain"] = {
    "status": done["Status"],
    "result": json.loads(done.get("Result") or "null"),
    "seconds": time.time() - t0,
    "events": [(e["EventType"], e.get("Name")) for e in events(arn)],
}

# A synchronous invoke waits for the execution and answers its result.
r = lam.invoke(FunctionName="flow", Payload=json.dumps({"order": "sync", "wait": 1}))
out["sync"] = {
    "status": r["StatusCode"],
    "payload": json.loads(r["Payload"].read()),
    "arn": r.get("DurableExecutionArn"),
}

# Parallel, map (concurrency 2, one tolerated failure), a child context, wait_for_condition and a
# chained invoke of a plain function.
_, arn = start("patterns-1", {"patterns": True})
done = until(arn, ended)
out["patterns"] = {
    "status": done["Status"],
    "result": json.loads(done.get("Result") or "null"),
    "error": done.get("Error"),
}

# The function's own credentials (in its sandbox) reach nothing but its executions.
other = arn.replace(":function:flow:", ":function:elsewhere:")
r = lam.invoke(FunctionName="flow", Payload=json.dumps({"probe": other}))
out["probe"] = json.loads(r["Payload"].read())

# A callback completed with send_durable_execution_callback_success.
_, arn = start("approve-1", {"order": "o-3", "callback": True})


def callback_id(arn):
    e = until(arn, lambda e: any(
        ev["EventType"] == "CallbackStarted" for ev in events(arn)
    ) or ended(e))
    for ev in events(arn):
        if ev["EventType"] == "CallbackStarted":
            return ev["CallbackStartedDetails"]["CallbackId"]
    raise SystemExit(f"no callback started: {e}")


cb = callback_id(arn)
lam.send_durable_execution_callback_heartbeat(CallbackId=cb)
lam.send_durable_execution_callback_success(CallbackId=cb, Result=b'"approved"')
done = until(arn, ended)
out["callback"] = {
    "status": done["Status"],
    "result": json.loads(done.get("Result") or "null"),
    "twice": error(lambda: lam.send_durable_execution_callback_success(CallbackId=cb, Result=b"1")),
}

# A callback that times out fails the execution; a failure answer fails it too.
_, arn = start("approve-2", {"order": "o-4", "callback": True, "callback_timeout": 1})
done = until(arn, ended)
out["callback_timeout"] = {"status": done["Status"], "error": done.get("Error")}
_, arn = start("approve-3", {"order": "o-5", "callback": True})
lam.send_durable_execution_callback_failure(
    CallbackId=callback_id(arn), Error={"ErrorType": "Rejected", "ErrorMessage": "no budget"}
)
done = until(arn, ended)
out["callback_failure"] = {"status": done["Status"], "error": done.get("Error")}

# A step that keeps failing is retried (after its backoff), then fails the execution.
_, arn = start("flaky-1", {"order": "o-6", "fail_step": True})
done = until(arn, ended)
out["failing_step"] = {
    "status": done["Status"],
    "seconds": (done["EndTimestamp"] - done["StartTimestamp"]).total_seconds(),
    "error": done.get("Error"),
    "events": [(e["EventType"], e.get("Name")) for e in events(arn)],
}

# A step result past the payload limit: the checkpoint is refused, the execution fails.
_, arn = start("huge-1", {"huge": True})
done = until(arn, ended)
out["huge"] = {"status": done["Status"], "error": done.get("Error")}

# Stop a waiting execution.
_, arn = start("stop-1", {"order": "o-7", "callback": True})
callback_id(arn)
stopped = lam.stop_durable_execution(DurableExecutionArn=arn, Error={"ErrorMessage": "cancelled"})
out["stop"] = {
    "has_timestamp": "StopTimestamp" in stopped,
    "status": lam.get_durable_execution(DurableExecutionArn=arn)["Status"],
    "again": error(lambda: lam.stop_durable_execution(DurableExecutionArn=arn)),
}

# Listings, by status and paged.
listed = lam.list_durable_executions_by_function(FunctionName="flow")["DurableExecutions"]
out["listed"] = sorted(e["DurableExecutionName"] for e in listed)
out["listed_succeeded"] = sorted(
    e["DurableExecutionName"]
    for e in lam.list_durable_executions_by_function(FunctionName="flow", Statuses=["SUCCEEDED"])[
        "DurableExecutions"
    ]
)
page = lam.list_durable_executions_by_function(FunctionName="flow", MaxItems=2)
out["paged"] = [len(page["DurableExecutions"]), "NextMarker" in page]

# Bad input: documented errors.
arn = out["started"]["arn"]
out["bad"] = {
    "unknown_arn": error(
        lambda: lam.get_durable_execution(DurableExecutionArn=arn.replace("order-1", "nope"))
    ),
    "not_an_arn": error(lambda: lam.get_durable_execution(DurableExecutionArn="arn:nope")),
    "forged_token": error(
        lambda: lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken="AAAA")
    ),
    "forged_callback": error(
        lambda: lam.send_durable_execution_callback_success(CallbackId="AAAA", Result=b"1")
    ),
    "unknown_function": error(lambda: lam.list_durable_executions_by_function(FunctionName="nope")),
}
print(json.dumps(out))
