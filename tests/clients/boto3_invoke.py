"""Drives Nimbus's Lambda Invoke API with boto3, configured only with endpoint_url and the
credentials Nimbus issued (AWS_SHARED_CREDENTIALS_FILE). Prints what it saw as JSON.

Usage: python boto3_invoke.py URL CREDENTIALS_FILE"""
import base64
import configparser
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url, credentials_file = sys.argv[1], sys.argv[2]
config = Config(retries={"max_attempts": 1})
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", config=config)


def error(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
    return None


out = {}
r = lam.invoke(FunctionName="echo", Payload=json.dumps({"hello": "boto3"}))
out["request_response"] = {
    "status": r["StatusCode"],
    "payload": json.loads(r["Payload"].read()),
    "executed_version": r.get("ExecutedVersion"),
    "function_error": r.get("FunctionError"),
}
out["dry_run"] = lam.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"]
r = lam.invoke(FunctionName="echo", Payload=b'{"tail": true}', LogType="Tail")
out["tail"] = base64.b64decode(r["LogResult"]).decode()
r = lam.invoke(FunctionName="fail", Payload=b'{"why": "boto3"}')
out["handler_error"] = {
    "status": r["StatusCode"],
    "function_error": r.get("FunctionError"),
    "payload": json.loads(r["Payload"].read()),
}
arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"
out["by_arn"] = json.loads(lam.invoke(FunctionName=arn, Payload=b"[1]")["Payload"].read())
r = lam.invoke(FunctionName="wasm-echo", Payload=b'{"from": "boto3"}')
out["wasm"] = json.loads(r["Payload"].read())
out["missing"] = error(lambda: lam.invoke(FunctionName="nope"))
r = lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"async": 1}))
out["event"] = {"status": r["StatusCode"], "request_id": r["ResponseMetadata"]["RequestId"],
                "payload": r["Payload"].read().decode()}
out["bad_qualifier"] = error(lambda: lam.invoke(FunctionName="echo", Qualifier="deadbeefdeadbeef"))
# ClientContext as the Lambda docs describe it: base64 of a JSON object, at most 3,583 bytes.
ctx = base64.b64encode(json.dumps({"custom": {"tenant": "acme"}}).encode()).decode()
r = lam.invoke(FunctionName="echo", ClientContext=ctx, Payload=b"{}")
out["client_context"] = json.loads(r["Payload"].read())["client_custom"]
big = base64.b64encode(json.dumps({"custom": {"k": "x" * 2700}}).encode()).decode()
out["client_context_too_large"] = error(lambda: lam.invoke(FunctionName="echo", ClientContext=big))
out["client_context_not_json"] = error(
    lambda: lam.invoke(FunctionName="echo", ClientContext=base64.b64encode(b"nope").decode()))

parser = configparser.ConfigParser()
parser.read(credentials_file)
key_id = parser["default"]["aws_access_key_id"]
wrong_secret = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", config=config,
                            aws_access_key_id=key_id, aws_secret_access_key="not-the-secret")
out["wrong_secret"] = error(lambda: wrong_secret.invoke(FunctionName="echo"))
unknown_key = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", config=config,
                           aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="x")
out["unknown_key"] = error(lambda: unknown_key.invoke(FunctionName="echo"))
print(json.dumps(out))
