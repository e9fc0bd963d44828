"""Asks the Lambda and Step Functions APIs about functions and state machines by name, as one
key (its AWS-style credentials): what a caller learns of each. Prints JSON: {"names": [listed
function names], "machines": [listed state machine names], "probes": {name: {call: error code
and status, or "ok"}}}.

Usage: python boto3_tenant_probe.py URL ACCESS_KEY_ID SECRET_ACCESS_KEY NAME..."""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url, key_id, secret = sys.argv[1:4]
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=key_id, aws_secret_access_key=secret,
                   config=Config(retries={"max_attempts": 1}))


def attempt(call):
    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return f'{e.response["Error"]["Code"]} {e.response["ResponseMetadata"]["HTTPStatusCode"]}'


probes = {}
for name in sys.argv[4:]:
    probes[name] = {
        "get_function": attempt(lambda: lam.get_function(FunctionName=name)),
        "get_function_configuration": attempt(lambda: lam.get_function_configuration(FunctionName=name)),
        "invoke": attempt(lambda: lam.invoke(FunctionName=name, Payload=b"{}")),
        "invoke_async": attempt(lambda: lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")),
        "list_versions": attempt(lambda: lam.list_versions_by_function(FunctionName=name)),
        "publish_version": attempt(lambda: lam.publish_version(FunctionName=name)),
        "list_aliases": attempt(lambda: lam.list_aliases(FunctionName=name)),
        "get_policy": attempt(lambda: lam.get_policy(FunctionName=name)),
        "add_permission": attempt(lambda: lam.add_permission(
            FunctionName=name, StatementId="s1", Action="lambda:InvokeFunction", Principal="key_x")),
    }
sfn = boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=key_id, aws_secret_access_key=secret,
                   config=Config(retries={"max_attempts": 1}))
for name in sys.argv[4:]:
    machine = f"arn:aws:states:us-east-1:000000000000:stateMachine:{name}"
    probes[name]["describe_state_machine"] = attempt(
        lambda: sfn.describe_state_machine(stateMachineArn=machine))
    probes[name]["start_execution"] = attempt(lambda: sfn.start_execution(stateMachineArn=machine))
    probes[name]["list_executions"] = attempt(lambda: sfn.list_executions(stateMachineArn=machine))
    probes[name]["describe_execution"] = attempt(lambda: sfn.describe_execution(
        executionArn=f"arn:aws:states:us-east-1:000000000000:execution:{name}:acmerun"))
names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
machines = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
print(json.dumps({"names": names, "machines": machines, "probes": probes}))
