"""Drives Nimbus's Step Functions API with boto3's `stepfunctions` client, configured only
with endpoint_url and the credentials Nimbus issued, and prints what it saw as JSON.

Usage: python boto3_stepfunctions.py URL"""
import json
import sys
import time

import boto3
import botocore.exceptions
from botocore.config import Config

url = sys.argv[1]
sfn = boto3.client(
    "stepfunctions", endpoint_url=url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
)
# StartSyncExecution goes to a `sync-` host; a local endpoint turns the prefix off.
sync = boto3.client(
    "stepfunctions",
    endpoint_url=url,
    region_name="us-east-1",
    config=Config(retries={"max_attempts": 1}, inject_host_prefix=False),
)
ROLE = "arn:aws:iam::000000000000:role/workflows"
out = {}
T0 = time.time()
marks = {}


def error(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"].get("Message", "")]
    return None


def until_done(arn, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.1)
    raise SystemExit(f"{arn} did not end")


def history(arn, size=1000):
    events, token = [], None
    while True:
        kw = {"executionArn": arn, "maxResults": size}
        if token:
            kw["nextToken"] = token
        page = sfn.get_execution_history(**kw)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def create(name, definition, **kw):
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE, **kw)["stateMachineArn"]


# A definition with mistakes: validated, then refused at creation.
bad = {"StartAt": "Nope", "States": {"A": {"Type": "Pass", "Next": "Gone"}, "B": {"Type": "Task", "End": True}}}
v = sfn.validate_state_machine_definition(definition=json.dumps(bad))
out["validate"] = {"result": v["result"], "diagnostics": [(d["code"], d["location"]) for d in v["diagnostics"]]}
out["create_bad"] = error(lambda: create("bad", bad))
out["create_bad_name"] = error(lambda: create("has space", {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))

orders = {
    "Comment": "every state type, end to end",
    "StartAt": "Add",
    "States": {
        "Add": {"Type": "Task", "Resource": "add", "ResultSelector": {"n.$": "$.n"}, "ResultPath": "$.result", "Next": "Big?"},
        "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.result.n", "NumericGreaterThan": 100, "Next": "Done"}], "Default": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Both"},
        "Both": {
            "Type": "Parallel",
            "ResultPath": "$.parallel",
            "Branches": [
                {"StartAt": "AddAgain", "States": {"AddAgain": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "add", "Payload.$": "$"}, "OutputPath": "$.Payload", "End": True}}},
                {"StartAt": "Refuse", "States": {"Refuse": {"Type": "Task", "Resource": "refuse", "End": True}}},
            ],
            "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.caught", "Next": "Each"}],
            "Next": "Done",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 10,
            "ItemSelector": {"n.$": "$$.Map.Item.Value"},
            "ItemProcessor": {"StartAt": "Noop", "States": {"Noop": {"Type": "Task", "Resource": "noop", "End": True}}},
            "ResultSelector": {"count.$": "States.ArrayLength($)"},
            "ResultPath": "$.mapped",
            "Next": "Done",
        },
        "Done": {"Type": "Pass", "Parameters": {"n.$": "$.result.n", "error.$": "$.caught.Error", "mapped.$": "$.mapped.count", "run.$": "$$.Execution.Name"}, "End": True},
    },
}
arn = create("orders", orders)
out["machine_arn"] = arn
out["create_again"] = create("orders", orders)
out["create_other"] = error(lambda: create("orders", {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
d = sfn.describe_state_machine(stateMachineArn=arn)
out["describe"] = {"name": d["name"], "status": d["status"], "type": d["type"], "roleArn": d["roleArn"], "same": json.loads(d["definition"]) == orders}
out["machines"] = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]

marks["created"] = round(time.time() - T0, 1)
items = list(range(int(sys.argv[2]) if len(sys.argv) > 2 else 200))
started = time.time()
e = sfn.start_execution(stateMachineArn=arn, name="run-1", input=json.dumps({"n": 1, "items": items}))
out["execution_arn"] = e["executionArn"]
out["same_run"] = sfn.start_execution(stateMachineArn=arn, name="run-1", input=json.dumps({"n": 1, "items": items}))["executionArn"]
d = until_done(e["executionArn"], limit=240)
out["seconds"] = time.time() - started
out["run"] = {"status": d["status"], "output": json.loads(d.get("output", "null")), "error": d.get("error"), "cause": d.get("cause")}
out["rerun_ended"] = error(lambda: sfn.start_execution(stateMachineArn=arn, name="run-1", input="{}"))
events = history(e["executionArn"])
out["history"] = {
    "ids": [ev["id"] for ev in events][:5],
    "first": events[0]["type"],
    "last": events[-1]["type"],
    "types": sorted({ev["type"] for ev in events}),
    "map_iterations": sum(1 for ev in events if ev["type"] == "MapIterationSucceeded"),
    "map_names": sorted({ev["mapIterationStartedEventDetails"]["name"] for ev in events if ev["type"] == "MapIterationStarted"}),
}
marks["ran"] = round(time.time() - T0, 1)
rev = sfn.get_execution_history(executionArn=e["executionArn"], reverseOrder=True, maxResults=1)["events"]
out["history_reverse_first"] = rev[0]["type"]
marks["history"] = round(time.time() - T0, 1)
out["executions"] = [(x["name"], x["status"]) for x in sfn.list_executions(stateMachineArn=arn)["executions"]]
out["executions_running"] = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]

# A task token handed to a function, answered by the client.
approval = {
    "StartAt": "Approve",
    "States": {
        "Approve": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "hand_out", "Payload": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
            "HeartbeatSeconds": 2,
            "TimeoutSeconds": 60,
            "ResultPath": "$.approval",
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Late"}],
            "End": True,
        },
        "Late": {"Type": "Pass", "End": True},
    },
}
approval_arn = create("approval", approval)


def token_of(arn):
    deadline = time.time() + 30
    while time.time() < deadline:
        for ev in history(arn):
            if ev["type"] == "TaskScheduled":
                payload = json.loads(ev["taskScheduledEventDetails"]["parameters"]).get("Payload") or {}
                if payload.get("token"):
                    return payload["token"]
        time.sleep(0.1)
    raise SystemExit("no token handed out")


a = sfn.start_execution(stateMachineArn=approval_arn, input=json.dumps({"order": 7}))["executionArn"]
token = token_of(a)
sfn.send_task_heartbeat(taskToken=token)
sfn.send_task_success(taskToken=token, output=json.dumps({"approved": True}))
d = until_done(a)
out["approved"] = {"status": d["status"], "output": json.loads(d["output"])}
marks["approved"] = round(time.time() - T0, 1)
out["paged_history"] = [[ev["id"] for ev in history(a, 2)], [ev["id"] for ev in history(a)]]
out["answer_twice"] = error(lambda: sfn.send_task_success(taskToken=token, output="{}"))
out["bad_output"] = error(lambda: sfn.send_task_success(taskToken=token, output="not json"))
out["bad_token"] = error(lambda: sfn.send_task_success(taskToken="forged", output="{}"))

silent = sfn.start_execution(stateMachineArn=approval_arn, input=json.dumps({"order": 8}))["executionArn"]
d = until_done(silent)
out["silent"] = {"status": d["status"], "error": json.loads(d["output"])["error"]["Error"]}
token = token_of(silent)
out["answer_late"] = error(lambda: sfn.send_task_success(taskToken=token, output="{}"))

marks["silent"] = round(time.time() - T0, 1)

# Redrive: a rejected approval fails the execution; redriven, only the approval runs again.
redo = create("redo", {"StartAt": "Add", "States": {
    "Add": {"Type": "Task", "Resource": "add", "Next": "Approve"},
    "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "hand_out", "Payload": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.approval", "End": True}}})
r = sfn.start_execution(stateMachineArn=redo, input=json.dumps({"n": 1}))["executionArn"]
sfn.send_task_failure(taskToken=token_of(r), error="Rejected", cause="not yet")
d = until_done(r)
out["redo_failed"] = {"status": d["status"], "error": d.get("error"), "redrive": d.get("redriveStatus")}
redriven = sfn.redrive_execution(executionArn=r)
out["redrive_date"] = redriven["redriveDate"].timestamp() > T0
sfn.send_task_success(taskToken=token_of(r), output=json.dumps({"ok": True}))
d = until_done(r)
out["redone"] = {"status": d["status"], "output": json.loads(d["output"]), "count": d.get("redriveCount"),
                 "dated": "redriveDate" in d, "redrive": d.get("redriveStatus")}
out["redo_scheduled"] = sum(1 for ev in history(r) if ev["type"] == "TaskScheduled")
out["redrive_succeeded"] = error(lambda: sfn.redrive_execution(executionArn=r))
# A failure nothing catches, and a stop.
failing = create("failing", {"StartAt": "Refuse", "States": {"Refuse": {"Type": "Task", "Resource": "refuse",
    "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 1, "MaxAttempts": 1}], "End": True}}})
d = until_done(sfn.start_execution(stateMachineArn=failing, input=json.dumps({"n": 3}))["executionArn"])
out["failed"] = {"status": d["status"], "error": d.get("error"), "cause": json.loads(d.get("cause", "{}")).get("errorMessage")}
marks["failed"] = round(time.time() - T0, 1)
sleepy = create("sleepy", {"StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": True}}})
s = sfn.start_execution(stateMachineArn=sleepy, name="nap")["executionArn"]
sfn.stop_execution(executionArn=s, error="Operator", cause="not needed")
d = sfn.describe_execution(executionArn=s)
out["stopped"] = {"status": d["status"], "error": d.get("error"), "cause": d.get("cause")}
out["stop_again"] = error(lambda: sfn.stop_execution(executionArn=s))

# Express: started and answered in one call.
express = create("quick", {"StartAt": "Add", "States": {"Add": {"Type": "Task", "Resource": "add", "End": True}}}, type="EXPRESS")
r = sync.start_sync_execution(stateMachineArn=express, input=json.dumps({"n": 41}))
out["sync"] = {"status": r["status"], "output": json.loads(r["output"])}
out["sync_standard"] = error(lambda: sync.start_sync_execution(stateMachineArn=arn, input="{}"))
out["redrive_express"] = error(lambda: sfn.redrive_execution(executionArn=r["executionArn"]))

marks["sync"] = round(time.time() - T0, 1)
out["missing_machine"] = error(lambda: sfn.describe_state_machine(stateMachineArn=arn + "x"))
out["missing_execution"] = error(lambda: sfn.describe_execution(executionArn=e["executionArn"] + "x"))
out["bad_arn"] = error(lambda: sfn.describe_execution(executionArn="arn:aws:lambda:nope"))
out["bad_input"] = error(lambda: sfn.start_execution(stateMachineArn=arn, input="{not json"))
sfn.delete_state_machine(stateMachineArn=sleepy)
out["after_delete"] = error(lambda: sfn.describe_state_machine(stateMachineArn=sleepy))
out["marks"] = marks
print(json.dumps(out))
