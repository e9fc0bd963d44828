// Nimbus's Node.js bootstrap: runs a Lambda handler (`file.export` in $_HANDLER; CommonJS or ES
// module; async, promise or callback style) against the AWS Lambda Runtime API at
// $AWS_LAMBDA_RUNTIME_API. Built-in modules only.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const API = '/2018-06-01/runtime';

function request(method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: API + urlPath, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function errorDoc(err, type) {
  const e = err instanceof Error ? err : new Error(String(err));
  return {
    errorType: type || e.name || 'Error',
    errorMessage: e.message,
    trace: (e.stack || '').split('\n'),
  };
}

async function post(urlPath, doc, errorType) {
  const headers = { 'content-type': 'application/json' };
  if (errorType) headers['lambda-runtime-function-error-type'] = errorType;
  await request('POST', urlPath, JSON.stringify(doc), headers);
}

async function initError(doc) {
  console.error(`[ERROR] ${doc.errorType}: ${doc.errorMessage}`);
  await post('/init/error', doc, doc.errorType);
  process.exit(1);
}

async function loadHandler() {
  const spec = process.env._HANDLER || '';
  const dot = spec.lastIndexOf('.');
  const [file, name] = [spec.slice(0, dot), spec.slice(dot + 1)];
  const root = process.env.LAMBDA_TASK_ROOT || '/var/task';
  const candidate = ['.js', '.mjs', '.cjs'].map((ext) => path.join(root, file + ext)).find((p) => fs.existsSync(p));
  if (!candidate) {
    return initError({ errorType: 'Runtime.ImportModuleError', errorMessage: `Error: Cannot find module '${file}'`, trace: [] });
  }
  let mod;
  try {
    mod = await import(pathToFileURL(candidate).href);
  } catch (err) {
    const doc = errorDoc(err, err instanceof SyntaxError ? 'Runtime.UserCodeSyntaxError' : 'Runtime.ImportModuleError');
    return initError(doc);
  }
  const handler = mod[name] ?? mod.default?.[name];
  if (typeof handler !== 'function') {
    return initError({ errorType: 'Runtime.HandlerNotFound', errorMessage: `${file}.${name} is undefined or not exported`, trace: [] });
  }
  return handler;
}

function context(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const clientContext = headers['lambda-runtime-client-context'];
  return {
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: clientContext ? JSON.parse(clientContext) : undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

function run(handler, event, ctx) {
  return new Promise((resolve, reject) => {
    const callback = (err, result) => (err ? reject(err) : resolve(result));
    try {
      const out = handler(event, ctx, callback);
      if (out && typeof out.then === 'function') out.then(resolve, reject);
      else if (handler.length < 3) resolve(out);
    } catch (err) {
      reject(err);
    }
  });
}

const handler = await loadHandler();
for (;;) {
  const next = await request('GET', '/invocation/next');
  if (next.status !== 200) {
    console.error(`runtime API answered ${next.status} to next`);
    process.exit(1);
  }
  const id = next.headers['lambda-runtime-aws-request-id'];
  if (next.headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = next.headers['lambda-runtime-trace-id'];
  try {
    const event = next.body.length ? JSON.parse(next.body.toString()) : null;
    const result = await run(handler, event, context(next.headers));
    await request('POST', `/invocation/${id}/response`, JSON.stringify(result === undefined ? null : result), { 'content-type': 'application/json' });
  } catch (err) {
    const doc = errorDoc(err);
    console.error(`[ERROR] ${doc.errorType}: ${doc.errorMessage}`);
    await post(`/invocation/${id}/error`, doc, 'Unhandled');
  }
}
