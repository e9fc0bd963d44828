"""Signs Lambda Invoke requests with botocore's own SigV4 signer, then tampers with them the
way an attacker in the middle would, and prints the status Nimbus answered each with (JSON).

Usage: python sigv4_attacks.py URL CREDENTIALS_FILE"""
import configparser
import json
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url, credentials_file = sys.argv[1], sys.argv[2]
config = configparser.ConfigParser()
config.read(credentials_file)
creds = Credentials(config["default"]["aws_access_key_id"], config["default"]["aws_secret_access_key"])
target = f"{url}/2015-03-31/functions/echo/invocations"


def signed(body, service="lambda", region="us-east-1", headers=None):
    req = AWSRequest(method="POST", url=target, data=body, headers=dict(headers or {}))
    SigV4Auth(creds, service, region).add_auth(req)
    return req


def send(req, body=None, extra=None):
    headers = dict(req.headers.items())
    headers.update(extra or {})
    r = urllib.request.Request(target, data=body if body is not None else req.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(r) as resp:
            return [resp.status, resp.headers.get("x-amzn-ErrorType")]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers.get("x-amzn-ErrorType")]


out = {}
out["valid"] = send(signed(b'{"n": 1}'))
# The body swapped after signing: the signature covers the body's hash.
out["body_swapped"] = send(signed(b'{"n": 1}'), body=b'{"n": 666}')
# The same, with the hash declared in x-amz-content-sha256 (signed) and a new body.
out["declared_hash_swapped"] = send(
    signed(b'{"n": 1}', headers={"X-Amz-Content-Sha256": "e7d8a2c1f6b5d3"}), body=b'{"n": 666}')
# UNSIGNED-PAYLOAD: Lambda wants the payload signed.
out["unsigned_payload"] = send(signed(b'{"n": 2}', headers={"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}))
# A credential scoped to another service, or another region.
out["other_service"] = send(signed(b'{"n": 3}', service="s3"))
out["other_region"] = send(signed(b'{"n": 4}', region="eu-west-1"))
# An x-amz header added after signing (turns a sync call into an async one).
out["unsigned_header"] = send(signed(b'{"n": 5}'), extra={"X-Amz-Invocation-Type": "Event"})
print(json.dumps(out))
