"""Sends CloudEvents to Nimbus with the CloudEvents Python SDK (binary, structured and batch
modes), as a producer would. Prints the HTTP statuses as JSON.

Usage: python cloudevents_sdk.py URL API_KEY"""
import json
import sys
import urllib.error
import urllib.request

from cloudevents.core.bindings import http
from cloudevents.core.v1.event import CloudEvent

url, key = sys.argv[1], sys.argv[2]


def post(headers, body):
    req = urllib.request.Request(f"{url}/v1/events", data=body, method="POST",
                                 headers={**headers, "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def event(id, data, **extra):
    attributes = {"id": id, "type": "com.example.fidelity", "source": "https://example.com/shop",
                  "datacontenttype": "application/json", "subject": "café order", **extra}
    return CloudEvent(attributes, data)


out = {}
# Structured: an integer extension and string data that would parse as a number.
m = http.to_structured_event(event("s-1", "123", count=42))
out["structured"] = post(m.headers, m.body)
# Binary: the SDK percent-encodes the subject's space and é in its ce- headers.
m = http.to_binary_event(event("b-1", {"total": 5}, count=7))
out["binary"] = post(m.headers, m.body)
# An empty batch is a valid batch.
out["empty_batch"] = post({"content-type": "application/cloudevents-batch+json"}, b"[]")
print(json.dumps(out))
