"""Asks the Lambda API about functions by name, as one key (its AWS-style credentials): what a
caller learns of each. Prints JSON: {"names": [listed function names], "probes": {name: {call:
error code and status, or "ok"}}}.

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
names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
print(json.dumps({"names": names, "probes": probes}))
