"""Nimbus's Python bootstrap: runs a Lambda handler (`module.function` in $_HANDLER) against the
AWS Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API. Standard library only.

It speaks HTTP/1.1 over one kept-alive socket itself, with the C `_socket` module: `http.client`
alone (it pulls in the email package) costs more start-up time than the interpreter, `socket`
costs several milliseconds of imports (enum, selectors), and both add per-invocation overhead.
Everything it imports is cheap or something a handler would import anyway (json)."""

import _socket
import json
import os
import sys
import time

API = "/2018-06-01/runtime"


class Context:
    """The `context` argument Lambda handlers receive."""

    def __init__(self, headers):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn", "")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        client_context = headers.get("lambda-runtime-client-context")
        self.client_context = ClientContext(json.loads(client_context)) if client_context else None

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class _Fields:
    """An object whose attributes are a JSON object's fields (as awslambdaric builds them)."""

    def __init__(self, fields):
        self.__dict__.update(fields)


class ClientContext:
    """`context.client_context` as on Lambda: `.client` (the mobile client's fields as
    attributes, or None), `.custom` and `.env` (dicts, or None)."""

    def __init__(self, doc):
        client = doc.get("client")
        self.client = _Fields(client) if isinstance(client, dict) else None
        self.custom = doc.get("custom")
        self.env = doc.get("env")


def error_doc(exc, error_type=None):
    import traceback  # only on errors: it is slow to import

    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class Client:
    """A minimal HTTP/1.1 client for the Runtime API: one persistent connection."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.host = address
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self.sock.connect(self.address)
        self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("runtime API closed the connection")
        self.buf += chunk

    def _read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body, self.buf = body + self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    return status, headers, body
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def request(self, method, path, body=b"", headers=()):
        """One request; a GET is tried again on a fresh connection. A POST is never sent
        twice: if its connection broke, the server has seen it or refused it."""
        head = f"{method} {API}{path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(head.encode("latin-1") + body)
                return self._read_response()
            except OSError:
                self.sock = None
                if attempt or method != "GET":
                    raise

    def post(self, path, doc, error_type=None):
        headers = [("Content-Type", "application/json")]
        if error_type:
            headers.append(("Lambda-Runtime-Function-Error-Type", error_type))
        self.request("POST", path, json.dumps(doc).encode(), headers)


def load_handler(client):
    name = os.environ.get("_HANDLER", "")
    module_name, _, function_name = name.rpartition(".")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    try:
        dotted = module_name.replace("/", ".")
        __import__(dotted)
        module = sys.modules[dotted]
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
        status, headers, body = client.request("GET", "/invocation/next")
        if status != 200:
            sys.exit(f"runtime API answered {status} to next")
        request_id = headers.get("lambda-runtime-aws-request-id")
        trace_id = headers.get("lambda-runtime-trace-id")
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
        try:
            client.request("POST", f"/invocation/{request_id}/response", payload,
                           [("Content-Type", "application/json")])
        except OSError as exc:
            # The server refused it (too large) or went away; either way, on to the next.
            print(f"[ERROR] the response could not be sent: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
