"""Versions and aliases through boto3, as the Lambda developer guide shows them: publish, alias,
invoke by number, alias and ARN, shift traffic, roll forward. Prints what it saw as JSON.

Usage: python boto3_versions.py URL STAGE   (credentials from AWS_SHARED_CREDENTIALS_FILE)
STAGE "first": v1 is deployed; "second": v2 is deployed (new code)."""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

url, stage = sys.argv[1], sys.argv[2]
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                   config=Config(retries={"max_attempts": 1}))
arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"


def error(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def call(**kw):
    r = lam.invoke(FunctionName=kw.pop("name", "echo"), Payload=b"{}", **kw)
    body = json.loads(r["Payload"].read())
    return {"executed": r["ExecutedVersion"], "context": body["function_version"],
            "greeting": body["env"]["GREETING"]}


out = {}
if stage == "first":
    v = lam.publish_version(FunctionName="echo", Description="first")
    out["published"] = [v["Version"], v["Description"], v["FunctionArn"]]
    out["again"] = lam.publish_version(FunctionName="echo")["Version"]
    a = lam.create_alias(FunctionName="echo", Name="live", FunctionVersion="1")
    out["alias"] = [a["AliasArn"], a["FunctionVersion"]]
    out["duplicate"] = error(lambda: lam.create_alias(FunctionName="echo", Name="live",
                                                      FunctionVersion="1"))
    out["numeric_name"] = error(lambda: lam.create_alias(FunctionName="echo", Name="123",
                                                         FunctionVersion="1"))
    out["missing_version"] = error(lambda: lam.create_alias(FunctionName="echo", Name="x",
                                                            FunctionVersion="9"))
    out["v1"] = call(Qualifier="1")
else:
    out["latest"] = call()
    out["v1"] = call(Qualifier="1")
    out["live"] = call(Qualifier="live")
    out["by_arn"] = call(name=f"{arn}:live")
    out["partial_arn"] = call(name="000000000000:function:echo:1")
    out["published"] = lam.publish_version(FunctionName="echo", Description="second")["Version"]
    out["v2"] = call(Qualifier="2")
    # Shift 50% of "live" to version 2, then roll forward, then back.
    lam.update_alias(FunctionName="echo", Name="live",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen = {call(Qualifier="live")["executed"] for _ in range(40)}
    out["shifted"] = sorted(seen)
    out["alias_routing"] = lam.get_alias(FunctionName="echo", Name="live")["RoutingConfig"]
    lam.update_alias(FunctionName="echo", Name="live", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})
    out["forward"] = call(Qualifier="live")
    out["versions"] = [v["Version"] for v in
                       lam.list_versions_by_function(FunctionName="echo")["Versions"]]
    out["aliases"] = [[a["Name"], a["FunctionVersion"]] for a in
                      lam.list_aliases(FunctionName="echo")["Aliases"]]
    out["config_live"] = lam.get_function_configuration(FunctionName="echo",
                                                         Qualifier="live")["Version"]
    lam.delete_alias(FunctionName="echo", Name="live")
    out["deleted"] = error(lambda: lam.invoke(FunctionName="echo", Qualifier="live"))
print(json.dumps(out))
