"""An HTTP-level fuzzer: sends hostile requests to every endpoint family of a running Nimbus
and checks, for each one, what a caller must be able to rely on:

  - no answer is a 5xx (a bad request is the caller's fault, and says so with a 4xx);
  - no request takes 5 s or more (nothing hangs on bad input);
  - a request answered with a 4xx changed nothing: apps, functions, queues (their messages),
    topics, schedules, usage and each function's newest invocation are as before.

Requests are drawn from a seeded generator, so a failure is reproducible with `--seed`.
Every request is sent over its own connection, written raw (so malformed HTTP can be sent too),
and the write side is shut afterwards: a server waiting for more bytes sees the end at once.

It never sends a valid destructive or scheduling request: DELETEs with the key name only
resources that do not exist, schedules always target a missing function, and schedule state
changes carry invalid values. A request that is accepted (2xx) may change state: the baseline
is taken again once the node is quiet.

Usage: python http_fuzz.py URL KEY [--count N] [--seed S]
Prints a JSON summary; exits 1 if any check failed. Only the standard library is used."""
import argparse
import http.client
import json
import random
import re
import socket
import sys
import time
import urllib.parse

TIMEOUT_S = 5.0

# Names that exist in the fuzzed app, and hostile ones.
KNOWN = ["hello", "echo", "pyecho", "q", "dlq", "t", "daily", "fuzz"]
HOSTILE_NAMES = [
    "", ".", "..", "../../etc/passwd", "%2e%2e%2f", "a" * 300, "a" * 70000, "ünïcödé", "%00",
    "x%2Fy", "a b", "$(id)", "';DROP TABLE functions;--", "%ff%fe", "%F0%9F%99%82", "-rf", "*",
    "nope", "NUL", "q%0d%0aX-Injected:%201", "%25", "?", "#", "~",
]
JUNK_STRINGS = [
    "", " ", "\u0000", "\u202e", "null", "true", "[]", "{}", "-1", "1e309", "NaN", "x" * 5000,
    "\ud7ff", "<script>", "${jndi:ldap://127.0.0.1/a}", "%s%n", "../" * 20,
]
JUNK_NUMBERS = [-1, 0, 1, 2**31, 2**32 + 1, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 1.5, -0.0, 1e308]


class Failure(Exception):
    pass


def junk_value(rng, depth=0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(JUNK_STRINGS)
    if kind == 1:
        return rng.choice(JUNK_NUMBERS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(0, 40)))
    if kind == 4:
        return rng.randrange(-10, 100000)
    if kind == 5:
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 6:
        return {rng.choice(JUNK_STRINGS + ["body", "type"]): junk_value(rng, depth + 1)}
    return "a" * rng.randrange(0, 70000)


def mutate(rng, template):
    """A body near a valid one: a field dropped, retyped, given an extreme value, or an
    unknown field added; or not JSON at all."""
    choice = rng.randrange(7)
    if choice == 0:
        return rng.choice([b"", b"{", b"nul", b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000, b'{"a":1}{"a":2}',
                           b"\x00" * 64, b'{"body": "\xc3\x28"}'])
    body = json.loads(json.dumps(template))
    if not isinstance(body, dict) or not body or choice == 1:
        body = dict(body) if isinstance(body, dict) else {}
        body[rng.choice(["unknown", "__proto__", "constructor", "Body", "body "])] = junk_value(rng)
    else:
        key = rng.choice(sorted(body))
        if choice == 2:
            del body[key]
        else:
            body[key] = junk_value(rng)
    if rng.randrange(10) == 0:
        return json.dumps([body]).encode()
    return json.dumps(body).encode()


def name(rng):
    return rng.choice(KNOWN + HOSTILE_NAMES) if rng.randrange(3) else rng.choice(HOSTILE_NAMES)


def unknown_name(rng):
    """A name no resource has (for authenticated DELETEs)."""
    return rng.choice(["nope", "fuzz-missing-%d" % rng.randrange(10**6), "%2e%2e", "a" * 300, "ünï"])


def path_segment(text):
    # Keep what looks percent-encoded as it is, so hostile encodings reach the server.
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._~%!$&'()*+,;=:@") else
                   urllib.parse.quote(c, safe="") for c in text)


class Request:
    def __init__(self, family, method, path, headers=None, body=b"", raw=None, auth=True):
        self.family, self.method, self.path = family, method, path
        self.headers, self.body, self.raw, self.auth = dict(headers or {}), body, raw, auth

    def describe(self):
        if self.raw is not None:
            return {"family": self.family, "raw": self.raw[:300].decode("latin-1")}
        return {"family": self.family, "method": self.method, "path": self.path[:300],
                "headers": {k: str(v)[:100] for k, v in self.headers.items()},
                "body": self.body[:300].decode("latin-1")}


def auth_header(rng, key):
    """Usually the real key; sometimes a wrong, malformed or missing one."""
    r = rng.randrange(10)
    if r < 7:
        return {"Authorization": f"Bearer {key}"}
    return rng.choice([{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"},
                       {"Authorization": "Bearer " + "k" * 10000}, {"Authorization": f"bearer  {key}x"},
                       {"Authorization": "Bearer \u00ff".encode().decode("latin-1")}])


def resource_headers(rng, key):
    """The key (usually) and a JSON content type."""
    headers = auth_header(rng, key)
    headers["Content-Type"] = "application/json"
    return headers


def delete(rng, key, family, n, headers):
    """A DELETE of a resource: with the real key, only of a name that does not exist."""
    if headers.get("Authorization") == f"Bearer {key}":
        n = path_segment(unknown_name(rng))
    return Request(family, "DELETE", f"/v1/{family}/{n}", headers)


def gen_control(rng, key):
    method = rng.choice(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
    n = path_segment(name(rng))
    path = rng.choice([
        "/v1/apps", f"/v1/apps/{n}", "/v1/functions", f"/v1/functions/{n}", f"/v1/functions/{n}/invoke",
        f"/v1/functions/{n}/invocations", f"/v1/functions/{n}/logs", f"/v1/invocations/{n}",
        "/v1/usage", "/metrics", "/v1/status", f"/v1/artifacts/{n}", f"/v1/{n}", "/v1/",
    ])
    query = rng.choice(["", "?limit=-1", "?limit=999999999999999999999", "?after=x", "?by=week",
                        "?from=yesterday&to=0", "?function=%00", "?limit=1&limit=2", "?" + "a=b&" * 2000,
                        "?to=99999999999999999999", "?from=2026-13-45"])
    headers = auth_header(rng, key)
    body = b""
    if method == "DELETE" and "Authorization" in headers and headers["Authorization"] == f"Bearer {key}":
        # Never delete what exists: only a missing name.
        path = rng.choice(["/v1/apps/", "/v1/functions/"]) + path_segment(unknown_name(rng))
    elif method in ("POST", "PUT", "PATCH"):
        if path == "/v1/apps" and method == "POST":
            headers["Content-Type"] = rng.choice(["application/json", "application/zip", "text/plain", "x/y"])
            body = mutate(rng, {"app": "fuzz", "manifest": "app = 'fuzz'\n[functions.f]\nruntime='wasm'\n",
                                "artifact": "0" * 64})
        elif path.startswith("/v1/artifacts/"):
            body = rng.choice([b"", b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)), b"x" * 1000])
        else:
            body = mutate(rng, {"n": 1})
    return Request("control", method, path + query, headers, body)


def junk_sigv4(rng, key):
    """Headers of a SigV4-signed call whose signature is never valid (or is no signature)."""
    date = rng.choice(["20261129T000000Z", "19700101T000000Z", "99991231T235959Z", "now", "", "2026-11-29"])
    cred = rng.choice(["AKIDEXAMPLE", "", "A" * 2000, "AKID/EX", "ünï"])
    scope = rng.choice(["20261129/us-east-1/lambda/aws4_request", "20261129/us-east-1/lambda", "/////",
                        "20261129/us-east-1/s3/aws4_request", ""])
    auth = rng.choice([
        f"AWS4-HMAC-SHA256 Credential={cred}/{scope}, SignedHeaders=host;x-amz-date, Signature={'ab' * 32}",
        f"AWS4-HMAC-SHA256 Credential={cred}/{scope}, SignedHeaders=, Signature=zz",
        f"AWS4-HMAC-SHA256 Credential={cred}/{scope}, Credential=x, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512 Credential=a", f"Bearer {key}", "", ",,,,", "=" * 5000,
        f"AWS4-HMAC-SHA256 Credential={cred}/{scope},SignedHeaders={';'.join(['h'] * 3000)},Signature=1",
    ])
    headers = {"X-Amz-Date": date, "X-Amz-Content-Sha256": rng.choice(["UNSIGNED-PAYLOAD", "0" * 64, "zz", ""])}
    if auth:
        headers["Authorization"] = auth
    return headers


def gen_lambda(rng, key):
    n = path_segment(name(rng))
    path = f"/2015-03-31/functions/{n}/invocations" + rng.choice(
        ["", "?Qualifier=$LATEST", "?Qualifier=%00", "?Qualifier=" + "9" * 500])
    headers = junk_sigv4(rng, key)
    headers["X-Amz-Invocation-Type"] = rng.choice(
        ["RequestResponse", "Event", "DryRun", "event", "", "Bogus", "Event\u00e9".encode().decode("latin-1")])
    headers["X-Amz-Log-Type"] = rng.choice(["Tail", "None", "x"])
    if rng.randrange(2):
        headers["X-Amz-Durable-Execution-Name"] = rng.choice(["n", "", "a" * 100, "x/y", "\u00e9"])
    if rng.randrange(4) == 0:
        headers["X-Amz-Client-Context"] = rng.choice(["%%%", "e30=", "A" * 10000])
    return Request("lambda", "POST", path, headers, mutate(rng, {"n": 1}), auth=False)


def gen_queues(rng, key):
    n = path_segment(name(rng))
    action = rng.choice(["put", "get", "messages", "receive", "ack", "visibility", "redrive", "list", "delete"])
    headers = resource_headers(rng, key)
    if action == "put":
        return Request("queues", "PUT", f"/v1/queues/{n}", headers, mutate(
            rng, {"visibility_timeout": "30s", "max_receive_count": 3, "dead_letter": "dlq",
                  "retention": "4d"}))
    if action == "get":
        return Request("queues", "GET", f"/v1/queues/{n}", headers)
    if action == "list":
        return Request("queues", "GET", "/v1/queues" + rng.choice(["", "?x=%00"]), headers)
    if action == "delete":
        return delete(rng, key, "queues", n, headers)
    if action == "messages":
        return Request("queues", "POST", f"/v1/queues/{n}/messages", headers, mutate(
            rng, {"body": "m", "attributes": {"k": "v"}, "delay_seconds": 0, "idempotency_key": "i"}))
    if action == "receive":
        # wait_seconds only with values that are refused: a valid long poll is not a hang.
        body = mutate(rng, {"max": 1, "visibility_seconds": 30, "wait_seconds": rng.choice(
            [-1, 21, 2**64, "5", None, 1.5])})
        return Request("queues", "POST", f"/v1/queues/{n}/receive", headers, body)
    if action == "ack":
        return Request("queues", "POST", f"/v1/queues/{n}/ack", headers, mutate(
            rng, {"receipts": [junk_value(rng), "AAAA", "1:2:3", "x" * 300]}))
    if action == "visibility":
        return Request("queues", "POST", f"/v1/queues/{n}/visibility", headers, mutate(
            rng, {"receipt": rng.choice(["AAAA", "1.2.3", "", "\u0000"]), "visibility_seconds": 10}))
    return Request("queues", "POST", f"/v1/queues/{n}/redrive" + rng.choice(["", "?to=%00", "?max=-1"]),
                   headers, mutate(rng, {"to": junk_value(rng)}))


def gen_topics(rng, key):
    n = path_segment(name(rng))
    headers = resource_headers(rng, key)
    action = rng.choice(["put", "publish", "get", "delete"])
    if action == "put":
        return Request("topics", "PUT", f"/v1/topics/{n}", headers, mutate(rng, {"subscriptions": [
            {"name": "s", "queue": rng.choice(["q", "missing", ""]),
             "filter": rng.choice([{"type": [{"prefix": 1}]}, {"a": [{"numeric": [">", "x"]}]},
                                   {"a": []}, {"a": [{"anything-but": {"x": 1}}]}, "nope",
                                   {"a" * 10: [{"exists": "yes"}]}])}]}))
    if action == "publish":
        return Request("topics", "POST", f"/v1/topics/{n}/messages", headers, mutate(
            rng, {"body": "m", "attributes": {"type": "x"}, "subject": "s", "delay_seconds": 1}))
    if action == "get":
        return Request("topics", "GET", f"/v1/topics/{n}", headers)
    return delete(rng, key, "topics", n, headers)


def gen_schedules(rng, key):
    n = path_segment(name(rng))
    headers = resource_headers(rng, key)
    action = rng.choice(["put", "state", "list", "delete"])
    if action == "put":
        expression = rng.choice(["rate(0 minutes)", "rate(9999999999999999999 days)", "cron(* * * * * *)",
                                 "cron(61 25 32 13 8 1)", "rate(1 minute)", "at(2026-02-30T00:00:00)",
                                 "cron(0/0 * * * ? *)", "", "rate(-1 hours)", "\u0000"])
        # The target is always a function that does not exist: nothing may ever be scheduled.
        return Request("schedules", "PUT", f"/v1/schedules/{n}", headers, mutate(
            rng, {"expression": expression, "target": {"function": "fuzz-missing-%d" % rng.randrange(1000)}}))
    if action == "state":
        value = rng.choice(["", "yes", "1", "TRUE ", "%00", "true&enabled=false", "nul"])
        query = rng.choice([f"?enabled={value}", "", "?disabled=true", "?enabled"])
        return Request("schedules", "POST", f"/v1/schedules/{n}/state{query}", headers, mutate(rng, {}))
    if action == "list":
        return Request("schedules", "GET", "/v1/schedules", headers)
    return delete(rng, key, "schedules", n, headers)


def gen_events(rng, key):
    headers = auth_header(rng, key)
    mode = rng.choice(["binary", "structured", "batch", "other"])
    if mode == "binary":
        headers.update({"Content-Type": rng.choice(["application/json", "text/plain", "", "a/b; charset=\u00ff"]),
                        "ce-specversion": rng.choice(["1.0", "0.3", "2.0", "", "1.0 "]),
                        "ce-id": rng.choice(["", "1", "x" * 5000]),
                        "ce-source": rng.choice(["", "/s", "::::", "%%%"]),
                        "ce-type": rng.choice(["", "com.example.nope", "\t"]),
                        "ce-time": rng.choice(["yesterday", "2026-13-01T00:00:00Z", "2026-11-29T00:00:00Z"])})
        if rng.randrange(2):
            del headers[rng.choice(["ce-specversion", "ce-id", "ce-source", "ce-type"])]
        body = mutate(rng, {"n": 1})
        # A complete valid event would be accepted: keep one attribute invalid.
        if headers.get("ce-specversion") == "1.0" and headers.get("ce-id") and headers.get("ce-source") \
                and headers.get("ce-type") and headers.get("ce-time") == "2026-11-29T00:00:00Z":
            headers["ce-time"] = "never"
    else:
        event = {"specversion": "1.0", "id": "1", "source": "/fuzz", "type": "com.example.fuzz",
                 "datacontenttype": "application/json", "data": {"n": 1}}
        key_ = rng.choice(sorted(event))
        event[key_] = junk_value(rng) if key_ != "type" else rng.choice(["", 7, None])
        if rng.randrange(3) == 0:
            event["data_base64"] = rng.choice(["!!!", "AAAA", 5])
        body = json.dumps([event] * rng.randrange(0, 3) if mode == "batch" else event).encode()
        if rng.randrange(4) == 0:
            body = mutate(rng, event)
        headers["Content-Type"] = {"structured": "application/cloudevents+json",
                                   "batch": "application/cloudevents-batch+json",
                                   "other": rng.choice(["application/cloudevents+xml", "multipart/form-data",
                                                        "application/cloudevents-batch+json; x"])}[mode]
    return Request("events", "POST", "/v1/events" + rng.choice(["", "?topic=%00"]), headers, body)


def gen_routes(rng, key):
    method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "G%T"])
    path = rng.choice([
        "/hello/" + path_segment(rng.choice(HOSTILE_NAMES)), "/hello/../../v1/apps", "/hello/%2e%2e/%2e%2e/v1/apps",
        "/hello//x", "/hello/x?" + "a" * 8000, "/" + "a/" * 2000, "/py", "/py/", "/PY", "/%00",
        "/hello/%C0%AF", "/\\..\\..\\etc\\passwd", "//127.0.0.1/", "/hello/x#frag",
        "/2018-06-01/runtime/invocation/next", "/2018-06-01/runtime/invocation/abc/response",
        "/2018-06-01/runtime/init/error",
    ])
    headers = {}
    if rng.randrange(3) == 0:
        headers = rng.choice([{"X-Forwarded-For": "1.2.3.4, " * 500}, {"Cookie": "a=" + "b" * 6000},
                              {"Content-Type": "application/json; charset=utf-7"}, {"Range": "bytes=-1-"},
                              {"X-Amz-Invocation-Type": "Event"}, {"Transfer-Encoding": "gzip"},
                              {"Accept-Encoding": "*;q=2"}, {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
                              {"traceparent": "ff-zz"}, {"Lambda-Runtime-Aws-Request-Id": "../x"}])
    body = b""
    if method in ("POST", "PUT"):
        # POST /py runs the Python echo function: a valid request, so keep it rare.
        if path == "/py" and rng.randrange(4):
            path = "/py/nope"
        body = mutate(rng, {"n": 1})
    return Request("routes", method, path, headers, body, auth=False)


RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded: value\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\nX: \x00\x01\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100000 + b"\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    b"GET http://127.0.0.1:1/v1/apps HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/b HTTP/1.1\r\nHost: x\r\n\r\nJUNK\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"GET /hello/a HTTP/1.1\r\n",
    b"GET /hello/a HTTP/1.1\nHost: x\n\n",
    b"\r\n\r\n\r\n",
    b"",
]


def gen_raw(rng, key):
    data = rng.choice(RAW)
    if rng.randrange(3) == 0 and data:
        # Flip a few bytes.
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        data = bytes(b)
    return Request("raw", None, None, raw=data, auth=False)


def gen_access(rng, key):
    """Keys, secrets and the audit log: junk bodies and names; deletes only of missing names."""
    n = path_segment(name(rng))
    headers = resource_headers(rng, key)
    kind = rng.choice(["key", "key", "keys", "secret", "secret", "secrets", "audit"])
    if kind == "keys":
        return Request("access", "GET", "/v1/keys" + rng.choice(["", "?x=1"]), headers)
    if kind == "audit":
        return Request("access", "GET", "/v1/audit" + rng.choice(["", "?limit=-1", "?limit=x", "?limit=99999999999999999999"]), headers)
    if kind == "secrets":
        return Request("access", "GET", "/v1/secrets", headers)
    if kind == "key":
        if rng.randrange(3) == 0:
            return delete(rng, key, "keys", n, headers)
        body = mutate(rng, {"role": rng.choice(["invoker", "root", "", "admin"]), "functions": ["*"],
                            "expires_in_s": rng.choice([0, -1, 2**64, 10]), "rate": 0,
                            "quota_period": rng.choice(["day", "year", ""])})
        return Request("access", "POST", "/v1/keys", headers, body)
    if rng.randrange(3) == 0:
        return delete(rng, key, "secrets", n, headers)
    body = mutate(rng, {"value": rng.choice(["", "x" * 40000, "v"]), "extra": 1})
    return Request("access", "PUT", f"/v1/secrets/{n}", headers, body)


# The tenant the test makes (with the app deployed, and this domain), and the default one.
TENANTS = ["fuzzt", "default"]
TENANT_HOSTS = ["fuzz.tenant.example", "FUZZ.Tenant.Example.:80", "[::1]:1", "", "a" * 300,
                "fuzz.tenant.example:99999", "\u00ff.example", "fuzz.tenant.example, evil.example"]


def gen_tenants(rng, key):
    """Tenant routing and the operator's API: hostile prefixes, hosts, names and bodies;
    creations that are never valid; deletes only of tenants and keys that do not exist."""
    headers = resource_headers(rng, key)
    t = path_segment(rng.choice(TENANTS + HOSTILE_NAMES))
    kind = rng.randrange(6)
    if kind == 0:
        if rng.randrange(2):
            headers.pop("Authorization", None)
        rest = rng.choice(["hello/x", "py", "", "v1/functions", "tenants/fuzzt/hello/x", "%2e%2e/v1/keys",
                           "2015-03-31/functions", "healthz"])
        return Request("tenants", rng.choice(["GET", "POST", "PUT", "OPTIONS"]), f"/tenants/{t}/{rest}",
                       headers, mutate(rng, {"a": 1}))
    if kind == 1:
        headers["Host"] = rng.choice(TENANT_HOSTS)
        return Request("tenants", "GET", rng.choice(["/hello/x", "/v1/functions", "/tenants/fuzzt/hello/x"]),
                       headers)
    if kind == 2:
        return Request("tenants", "GET", rng.choice([
            "/v1/tenants", f"/v1/tenants/{t}", f"/v1/tenants/{t}/keys",
            f"/v1/tenants/{t}/usage?by=" + rng.choice(["total", "x", "hour"])]), headers)
    if kind == 3:
        body = mutate(rng, {"name": rng.choice(["Bad_Name", "", "default", "fuzzt", "a" * 50, "x y"]),
                            "domains": [rng.choice(["fuzz.tenant.example", "localhost", "a..b", ""])],
                            "limits": {"concurrency": rng.choice([0, -1, 2**64]),
                                       "memory_bytes": rng.choice([0, 10, -5])}})
        return Request("tenants", "POST", "/v1/tenants", headers, body)
    if kind == 4:
        if headers.get("Authorization") == f"Bearer {key}":
            missing = path_segment(unknown_name(rng))
            return Request("tenants", "DELETE", rng.choice(
                [f"/v1/tenants/{missing}", f"/v1/tenants/fuzzt/keys/{missing}"]), headers)
        return Request("tenants", "DELETE", f"/v1/tenants/{t}", headers)
    body = mutate(rng, {"role": rng.choice(["root", "", "admin"]), "expires_in_s": rng.choice([0, -1, 2**64])})
    return Request("tenants", "POST", f"/v1/tenants/{t}/keys", headers, body)


DURABLE_ARNS = [
    "arn:aws:lambda:us-east-1:000000000000:function:hello:$LATEST/durable-execution/n/0123",
    "arn:aws:lambda:us-east-1:000000000000:function:hello", "arn:nope", "", "a" * 3000,
    "arn:aws:lambda:us-east-1:000000000000:function:../..:$LATEST/durable-execution/x/y",
]


def gen_durable(rng, key):
    """The durable execution API (SigV4: never validly signed here), the public status
    resources (junk tokens) and the /v1 execution endpoints (no function is durable)."""
    arn = path_segment(rng.choice(DURABLE_ARNS + HOSTILE_NAMES))
    kind = rng.randrange(5)
    if kind == 0:
        headers = junk_sigv4(rng, key)
        method, rest = rng.choice([("POST", "/checkpoint"), ("GET", "/state?CheckpointToken=AAAA&Marker=x"),
                                   ("GET", ""), ("GET", "/history?MaxItems=0&ReverseOrder=x"), ("POST", "/stop")])
        body = mutate(rng, {"CheckpointToken": "AAAA", "Updates": [{"Id": "s", "Type": "STEP", "Action": "START"}]})
        return Request("durable", method, f"/2025-12-01/durable-executions/{arn}{rest}", headers, body, auth=False)
    if kind == 1:
        headers = junk_sigv4(rng, key)
        action = rng.choice(["succeed", "fail", "heartbeat", "x", ""])
        return Request("durable", rng.choice(["POST", "GET"]),
                       f"/2025-12-01/durable-execution-callbacks/{arn}/{action}", headers,
                       mutate(rng, {"ErrorMessage": "e"}), auth=False)
    if kind == 2:
        token = path_segment(rng.choice(["AAAA", "", "A" * 5000, "%00"] + HOSTILE_NAMES))
        rest = rng.choice(["", "/stop", "/callbacks/AAAA/succeed", "/callbacks/x/fail", "/callbacks/AAAA/x"])
        return Request("durable", rng.choice(["GET", "POST"]), f"/2025-12-01/durable-status/{token}{rest}", {},
                       mutate(rng, {"ErrorMessage": "e"}), auth=False)
    headers = resource_headers(rng, key)
    if kind == 3:
        n = path_segment(name(rng))
        query = rng.choice(["", "?status=x", "?status=RUNNING&limit=-1", "?limit=99999999999999999999",
                            "?name=a%2Fb", "?name=" + "n" * 100, "?after=%00"])
        return Request("durable", rng.choice(["GET", "POST"]), f"/v1/functions/{n}/executions{query}",
                       headers, mutate(rng, {"order": 1}))
    action = rng.choice(["succeed", "fail", "heartbeat", "x"])
    method, path = rng.choice([("GET", f"/v1/executions/{arn}"), ("GET", f"/v1/executions/{arn}/history"),
                               ("POST", f"/v1/executions/{arn}/stop"), ("POST", f"/v1/callbacks/{arn}/{action}")])
    return Request("durable", method, path, headers, mutate(rng, {"ErrorMessage": "e"}))


FAMILIES = [gen_control, gen_lambda, gen_queues, gen_topics, gen_schedules, gen_events, gen_routes, gen_raw,
            gen_access, gen_tenants, gen_durable]


def encode(req, host):
    if req.raw is not None:
        return req.raw
    # A request may bring its own Host (tenant domains); otherwise the node's.
    head = [f"{req.method} {req.path} HTTP/1.1", "Connection: close"]
    if "Host" not in req.headers:
        head.insert(1, f"Host: {host}")
    for k, v in req.headers.items():
        head.append(f"{k}: {v}")
    if req.body or req.method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(req.body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", errors="replace") + req.body


STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def send(addr, data):
    """Sends one request; returns (final status or None, elapsed seconds, bytes received)."""
    start = time.monotonic()
    with socket.create_connection(addr, timeout=TIMEOUT_S) as s:
        s.settimeout(TIMEOUT_S)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed early (e.g. a refused header): read what it said
        out = b""
        try:
            while True:
                if time.monotonic() - start >= TIMEOUT_S:
                    raise socket.timeout()
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            return None, time.monotonic() - start, out
        except OSError:
            pass  # reset after the answer (the server closed with our bytes unread)
    # Every status line (pipelined answers follow the previous body directly; no body the
    # fuzzer can provoke contains one).
    statuses = [int(m.group(1)) for m in STATUS.finditer(out)]
    final = [st for st in statuses if st >= 200]
    # Pipelined requests: one accepted is enough for the node to change.
    accepted = [st for st in final if st < 400]
    status = accepted[0] if accepted else final[0] if final else statuses[0] if statuses else None
    return status, time.monotonic() - start, out


class Node:
    def __init__(self, url, key):
        u = urllib.parse.urlparse(url)
        self.addr = (u.hostname, u.port)
        self.host = f"{u.hostname}:{u.port}"
        self.key = key

    def get(self, path):
        conn = http.client.HTTPConnection(*self.addr, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.key}"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise Failure(f"GET {path}: {r.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def snapshot(self):
        functions = self.get("/v1/functions")
        for f in functions:
            f.pop("instances", None)
            f.pop("keep_alive", None)
        queues = self.get("/v1/queues")
        for q in queues:
            # Leases end on their own; the messages a queue holds do not change on their own.
            q.pop("oldest_age_ms", None)
            q.pop("in_flight", None)
        newest = {}
        for f in functions:
            records = self.get(f"/v1/functions/{urllib.parse.quote(f['name'])}/invocations?limit=1")
            newest[f["name"]] = records[0].get("id") if records else None
        usage = self.get("/v1/usage?by=total")
        return {"apps": self.get("/v1/apps"), "functions": functions, "queues": queues,
                "keys": self.get("/v1/keys"), "secrets": self.get("/v1/secrets"),
                "tenants": self.get("/v1/tenants"),
                "topics": self.get("/v1/topics"), "schedules": strip_times(self.get("/v1/schedules")),
                "usage": usage, "newest_invocation": newest}

    def quiet_snapshot(self):
        """A snapshot once the node has stopped changing (an accepted event is routed after
        its 202)."""
        deadline = time.monotonic() + 10
        last = self.snapshot()
        while time.monotonic() < deadline:
            time.sleep(0.15)
            now = self.snapshot()
            if now == last:
                return now
            last = now
        raise Failure("the node's state kept changing for 10 s after an accepted request")


def strip_times(schedules):
    for s in schedules:
        for k in [k for k in s if "next" in k or "last" in k]:
            s.pop(k)
    return schedules


def diff(a, b):
    return {k: {"before": a[k], "after": b[k]} for k in a if a[k] != b.get(k)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("--count", type=int, default=1200)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    node = Node(args.url, args.key)
    baseline = node.quiet_snapshot()
    summary = {"seed": args.seed, "sent": 0, "families": {}, "statuses": {}, "no_response": 0,
               "slowest_s": 0.0, "rebaselines": 0, "failures": []}
    for i in range(args.count):
        gen = FAMILIES[i % len(FAMILIES)]
        req = gen(rng, args.key)
        status, elapsed, out = send(node.addr, encode(req, node.host))
        summary["sent"] += 1
        fam = summary["families"].setdefault(req.family, {"sent": 0, "4xx": 0, "2xx": 0})
        fam["sent"] += 1
        summary["slowest_s"] = max(summary["slowest_s"], round(elapsed, 3))
        summary["statuses"][str(status)] = summary["statuses"].get(str(status), 0) + 1

        def fail(why):
            summary["failures"].append({"index": i, "why": why, "request": req.describe(),
                                        "response": out[:300].decode("latin-1")})

        if status is None and elapsed >= TIMEOUT_S:
            fail(f"no answer within {TIMEOUT_S} s")
        elif status is None:
            summary["no_response"] += 1
            if req.raw is None:
                fail("the connection closed without an answer")
        elif status >= 500 or (req.raw is not None and re.search(rb"HTTP/1\.[01] 5\d\d", out)):
            fail(f"answered {status}")
        if status is not None and 400 <= status < 500:
            fam["4xx"] += 1
            now = node.snapshot()
            if now != baseline:
                fail(f"refused with {status}, yet the state changed: {json.dumps(diff(baseline, now))[:2000]}")
                baseline = node.quiet_snapshot()
        elif status is None or status < 400:
            if status is not None and 200 <= status < 300:
                fam["2xx"] += 1
            summary["rebaselines"] += 1
            baseline = node.quiet_snapshot()
    print(json.dumps(summary, indent=1))
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
