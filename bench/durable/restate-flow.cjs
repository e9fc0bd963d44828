// The benchmark's workflow on Restate: three no-op steps, each journaled (ctx.run).
// Node 20 lacks Promise.withResolvers, which the SDK uses.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const restate = require("@restatedev/restate-sdk");

const flow = restate.service({
  name: "flow",
  handlers: {
    run: async (ctx) => {
      const a = await ctx.run("one", () => 1);
      const b = await ctx.run("two", () => 2);
      const c = await ctx.run("three", () => 3);
      return { sum: a + b + c };
    },
  },
});

restate.serve({ services: [flow], port: Number(process.env.PORT || 9080) });
