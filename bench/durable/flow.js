// The benchmark's workflow on Nimbus, in JavaScript: three no-op steps, each checkpointed
// (AWS durable execution SDK for JavaScript).
const { withDurableExecution } = require("@aws/durable-execution-sdk-js");

exports.handler = withDurableExecution(async (event, context) => {
  const a = await context.step("one", async () => 1);
  const b = await context.step("two", async () => 2);
  const c = await context.step("three", async () => 3);
  return { sum: a + b + c };
});
