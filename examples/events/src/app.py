"""Handlers of the events example: each receives the event shape AWS would send it."""
import json


def orders(event, context):
    """Subscribed to topic `shop` for messages with type = order.* (SNS records)."""
    for record in event["Records"]:
        sns = record["Sns"]
        attributes = {k: v["Value"] for k, v in sns["MessageAttributes"].items()}
        print(f"order {sns['MessageId']}: {sns['Message']} {attributes}")
    return {"handled": len(event["Records"])}


def jobs(event, context):
    """Triggered by queue `jobs` with batches (SQS records). Items whose body is `fail` are
    reported as failed: only they come back, and after 3 deliveries go to `jobs-dlq`."""
    failed = []
    for record in event["Records"]:
        print(f"job {record['messageId']}: {record['body']}")
        if record["body"] == "fail":
            failed.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failed}


def tick(event, context):
    """Fired by schedule `heartbeat` (an EventBridge scheduled event)."""
    print(f"tick at {event['time']} from {event['resources'][0]}")
