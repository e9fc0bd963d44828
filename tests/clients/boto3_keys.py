"""Calls the Lambda API with boto3 as one Nimbus key (its AWS-style credentials): an invoke and
a ListFunctions. Prints JSON: what each answered, or its error code and status.

Usage: python boto3_keys.py URL ACCESS_KEY_ID SECRET_ACCESS_KEY FUNCTION"""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url, key_id, secret, function = sys.argv[1:5]
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=key_id, aws_secret_access_key=secret,
                   config=Config(retries={"max_attempts": 1}))


def attempt(call):
    try:
        return {"ok": call()}
    except botocore.exceptions.ClientError as e:
        return {"error": e.response["Error"]["Code"],
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                "message": e.response["Error"].get("Message", "")}


print(json.dumps({
    "invoke": attempt(lambda: lam.invoke(FunctionName=function, Payload=b"{}")["StatusCode"]),
    "list": attempt(lambda: len(lam.list_functions()["Functions"])),
}))
