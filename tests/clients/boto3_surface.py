"""Reads Nimbus's Lambda control plane with boto3 and points other AWS clients (SQS, SNS, S3,
Step Functions) at it, as a user switching from AWS would. Prints what it saw as JSON.

Usage: python boto3_surface.py URL   (credentials from AWS_SHARED_CREDENTIALS_FILE)"""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url = sys.argv[1]
config = Config(retries={"max_attempts": 1})


def client(service):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=config)


def error(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return {
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"]["Message"],
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    return None


lam = client("lambda")
out = {}
page = lam.list_functions(MaxItems=1)
out["first_page"] = [f["FunctionName"] for f in page["Functions"]]
out["next_marker"] = page.get("NextMarker")
out["all"] = [
    f["FunctionName"]
    for p in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
    for f in p["Functions"]
]
f = lam.get_function(FunctionName="echo")
out["get_function"] = f["Configuration"]
out["get_configuration"] = lam.get_function_configuration(FunctionName="echo")
out["get_configuration"].pop("ResponseMetadata")
out["by_arn_qualified"] = lam.get_function_configuration(
    FunctionName="arn:aws:lambda:us-east-1:000000000000:function:echo:$LATEST")["Version"]
out["versions"] = [v["Version"] for v in lam.list_versions_by_function(FunctionName="echo")["Versions"]]
out["aliases"] = lam.list_aliases(FunctionName="echo")["Aliases"]
out["get_alias"] = error(lambda: lam.get_alias(FunctionName="echo", Name="live"))
out["missing"] = error(lambda: lam.get_function(FunctionName="nope"))

# Calls Nimbus does not serve: each names the operation, in the client's own protocol.
out["unsupported"] = {
    "lambda": error(lambda: lam.create_function(
        FunctionName="x", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/r",
        Handler="app.handler", Code={"ZipFile": b"PK"})),
    "sqs": error(lambda: client("sqs").list_queues()),
    "sns": error(lambda: client("sns").publish(TopicArn="arn:aws:sns:us-east-1:000000000000:t",
                                               Message="hi")),
    "s3": error(lambda: client("s3").list_buckets()),
    "stepfunctions": error(lambda: client("stepfunctions").list_activities()),
}
print(json.dumps(out))
