"""Nimbus's Python bootstrap: runs a Lambda handler (`module.function` in $_HANDLER) against the
AWS Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API. Standard library only."""

import http.client
import importlib
import json
import os
import sys
import time
import traceback

API = "/2018-06-01/runtime"


class Context:
    """The `context` argument Lambda handlers receive."""

    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        client_context = headers.get("Lambda-Runtime-Client-Context")
        self.client_context = json.loads(client_context) if client_context else None

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def error_doc(exc, error_type=None):
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class Client:
    def __init__(self, address):
        self.address = address
        self.conn = http.client.HTTPConnection(address)

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            try:
                self.conn.request(method, API + path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response, response.read()
            except (ConnectionError, http.client.HTTPException):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.address)

    def post(self, path, doc, error_type=None):
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["Lambda-Runtime-Function-Error-Type"] = error_type
        self.request("POST", path, json.dumps(doc).encode(), headers)


def load_handler(client):
    name = os.environ.get("_HANDLER", "")
    module_name, _, function_name = name.rpartition(".")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as exc:  # noqa: BLE001 - every import failure is reported
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else "Runtime.UserCodeSyntaxError" if isinstance(exc, SyntaxError) else "Runtime.InitError"
        doc = error_doc(exc, kind)
        doc["errorMessage"] = f"Unable to import module '{module_name}': {exc}"
        print(f"[ERROR] {doc['errorType']}: {doc['errorMessage']}", file=sys.stderr)
        client.post("/init/error", doc, kind)
        sys.exit(1)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        doc = {
            "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        }
        print(f"[ERROR] {doc['errorType']}: {doc['errorMessage']}", file=sys.stderr)
        client.post("/init/error", doc, doc["errorType"])
        sys.exit(1)
    return handler


def main():
    client = Client(os.environ["AWS_LAMBDA_RUNTIME_API"])
    handler = load_handler(client)
    while True:
        response, body = client.request("GET", "/invocation/next")
        if response.status != 200:
            sys.exit(f"runtime API answered {response.status} to next")
        headers = response.headers
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            event = json.loads(body) if body else None
            result = handler(event, Context(headers))
            payload = json.dumps(result).encode()
        except Exception as exc:  # noqa: BLE001 - a handler error is the function's result
            doc = error_doc(exc)
            print(f"[ERROR] {doc['errorType']}: {doc['errorMessage']}", file=sys.stderr)
            client.post(f"/invocation/{request_id}/error", doc, "Unhandled")
            continue
        client.request("POST", f"/invocation/{request_id}/response", payload,
                       {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()
