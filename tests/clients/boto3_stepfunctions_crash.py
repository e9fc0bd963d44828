"""Starts workflow executions for the kill -9 test, or waits for them to finish.

Usage: python boto3_stepfunctions_crash.py URL start N   -> the execution ARNs (JSON)
       python boto3_stepfunctions_crash.py URL finish    -> per execution: status, output, and
                                                            how often each task succeeded in its history"""
import json
import sys
import time

import boto3
from botocore.config import Config

url, mode = sys.argv[1], sys.argv[2]
sfn = boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1", config=Config(retries={"max_attempts": 5}))
ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:crashy"

if mode == "start":
    definition = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Task", "Resource": "add", "ResultSelector": {"n.$": "$.n"}, "ResultPath": "$.first", "Next": "Nap"},
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Each"},
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.mapped",
                "ItemProcessor": {"StartAt": "Noop", "States": {"Noop": {"Type": "Task", "Resource": "noop", "End": True}}},
                "Next": "Last",
            },
            "Last": {"Type": "Task", "Resource": "add", "InputPath": "$.first", "End": True},
        },
    }
    sfn.create_state_machine(name="crashy", definition=json.dumps(definition), roleArn="arn:aws:iam::000000000000:role/r")
    arns = [
        sfn.start_execution(stateMachineArn=ARN, name=f"crash-{i}", input=json.dumps({"n": i, "items": [1, 2, 3, 4, 5]}))["executionArn"]
        for i in range(int(sys.argv[3]))
    ]
    print(json.dumps(arns))
else:
    out = {}
    deadline = time.time() + 240
    pending = [e["executionArn"] for e in sfn.list_executions(stateMachineArn=ARN, maxResults=1000)["executions"]]
    while pending and time.time() < deadline:
        still = []
        for arn in pending:
            d = sfn.describe_execution(executionArn=arn)
            if d["status"] == "RUNNING":
                still.append(arn)
                continue
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            succeeded = {}
            for ev in events:
                if ev["type"] == "TaskStateExited":
                    name = ev["stateExitedEventDetails"]["name"]
                    succeeded[name] = succeeded.get(name, 0) + 1
            out[d["name"]] = {"status": d["status"], "output": json.loads(d.get("output", "null")), "exited": succeeded}
        pending = still
        time.sleep(0.2)
    print(json.dumps(out))
