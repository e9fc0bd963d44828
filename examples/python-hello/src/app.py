import json
import os


def handler(event, context):
    """An API Gateway HTTP API (payload 2.0) handler; also works with `nimbus invoke`."""
    params = event.get("queryStringParameters") or {}
    name = params.get("name", "world")
    print(f"greeting {name} from {context.function_name}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"hello, {name}", "runtime": "python", "region": os.environ["AWS_REGION"]}),
    }
