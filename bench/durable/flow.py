"""The benchmark's workflow on Nimbus: three no-op steps, each checkpointed (AWS durable
execution SDK for Python)."""
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    a = context.step(lambda _: 1, name="one")
    b = context.step(lambda _: 2, name="two")
    c = context.step(lambda _: 3, name="three")
    return {"sum": a + b + c}
