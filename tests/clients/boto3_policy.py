"""Drives Lambda's resource-policy calls with boto3: an admin key grants a reader key the right
to invoke a function (AddPermission, GetPolicy), the reader invokes, the grant is removed
(RemovePermission), the reader is refused again. Prints JSON of what each call answered.

Usage: python boto3_policy.py URL ADMIN_ID ADMIN_SECRET READER_ID READER_SECRET FUNCTION"""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url, admin_id, admin_secret, reader_id, reader_secret, function = sys.argv[1:7]


def client(key_id, secret):
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


admin, reader = client(admin_id, admin_secret), client(reader_id, reader_secret)


def attempt(call):
    try:
        return {"ok": call()}
    except botocore.exceptions.ClientError as e:
        return {"error": e.response["Error"]["Code"],
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}


def invoke():
    return reader.invoke(FunctionName=function, Payload=b"{}")["StatusCode"]


def grant(sid, principal, action="lambda:InvokeFunction"):
    return json.loads(admin.add_permission(FunctionName=function, StatementId=sid, Action=action,
                                           Principal=principal)["Statement"])


out = {"before": attempt(invoke), "no_policy": attempt(lambda: admin.get_policy(FunctionName=function))}
out["grant"] = attempt(lambda: grant("let-reader", reader_id))
out["duplicate"] = attempt(lambda: grant("let-reader", reader_id))
out["bad_action"] = attempt(lambda: grant("other", reader_id, "lambda:DeleteFunction"))
out["unknown_principal"] = attempt(lambda: grant("other", "AKNBNOTAKEY"))
out["by_reader"] = attempt(lambda: reader.add_permission(
    FunctionName=function, StatementId="self", Action="lambda:InvokeFunction", Principal=reader_id))
out["policy"] = attempt(lambda: json.loads(admin.get_policy(FunctionName=function)["Policy"]))
out["granted"] = attempt(invoke)
out["remove"] = attempt(lambda: admin.remove_permission(FunctionName=function, StatementId="let-reader")
                        ["ResponseMetadata"]["HTTPStatusCode"])
out["remove_again"] = attempt(lambda: admin.remove_permission(FunctionName=function, StatementId="let-reader"))
out["after"] = attempt(invoke)
print(json.dumps(out))
