#!/usr/bin/env bash
# The test suite. Installs what the end-to-end tests drive, then runs `cargo test --workspace`:
#   - a Python venv with boto3, awslambdaric, prometheus_client, the CloudEvents SDK, PyJWT,
#     cryptography and the AWS durable execution SDK (the real clients, parsers and token issuers
#     the tests use),
#   - Debian's Chromium (a real browser for the CORS tests),
#   - awslambdaric and aws-lambda-ric (npm; a native addon built with cmake/autotools) installed
#     as function code: functions that bring AWS's runtime clients;
#   - the AWS durable execution SDKs for Python (with boto3) and JavaScript, installed as
#     function code.
# Installs go to /var/tmp (override with NIMBUS_TEST_VENV, NIMBUS_TEST_RIC_PYTHON,
# NIMBUS_TEST_RIC_NODE_DIR) and are reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${NIMBUS_TEST_VENV:-/var/tmp/nimbus-venv}"
ric="${NIMBUS_TEST_RIC_PYTHON:-/var/tmp/nimbus-ric/python}"
ric_node_dir="${NIMBUS_TEST_RIC_NODE_DIR:-/var/tmp/nimbus-ric/node}"
durable_sdk="${NIMBUS_TEST_DURABLE_SDK:-/var/tmp/nimbus-durable-sdk/python}"
durable_sdk_node="${NIMBUS_TEST_DURABLE_SDK_NODE:-/var/tmp/nimbus-durable-sdk/node}"

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
  else
    echo "please install: $*" >&2; exit 1
  fi
}

/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
packages="boto3 awscli awslambdaric prometheus_client cloudevents openapi-spec-validator pyjwt cryptography aws-durable-execution-sdk-python>=3,<4"
if ! "$venv/bin/python" -c 'import boto3, awscli, awslambdaric, prometheus_client, cloudevents.core, openapi_spec_validator, jwt, cryptography, aws_durable_execution_sdk_python' 2>/dev/null; then
  echo "== installing into $venv: $packages"
  [ -x "$venv/bin/pip" ] || /usr/bin/python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $packages
fi
command -v chromium >/dev/null || { echo "== installing chromium"; apt_install chromium; }
if [ ! -d "$ric/awslambdaric" ]; then
  echo "== installing awslambdaric as function code in $ric"
  "$venv/bin/pip" install -q --target "$ric" awslambdaric
fi

if [ ! -d "$durable_sdk/aws_durable_execution_sdk_python" ]; then
  echo "== installing the AWS durable execution SDK as function code in $durable_sdk"
  "$venv/bin/pip" install -q --target "$durable_sdk" "aws-durable-execution-sdk-python>=3,<4"
fi

if [ ! -d "$durable_sdk_node/node_modules/@aws/durable-execution-sdk-js" ]; then
  echo "== installing the AWS durable execution SDK for JavaScript as function code in $durable_sdk_node"
  command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$durable_sdk_node"
  (cd "$durable_sdk_node" && npm install --no-audit --no-fund --silent "@aws/durable-execution-sdk-js@2")
fi

ric_node="$ric_node_dir/node_modules/aws-lambda-ric"
if [ ! -f "$ric_node/dist/rapid-client.node" ]; then
  echo "== building aws-lambda-ric in $ric_node_dir (a few minutes)"
  for tool in cmake autoconf automake libtool make g++; do
    command -v "$tool" >/dev/null || { apt_install cmake autoconf automake libtool make g++; break; }
  done
  command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$ric_node_dir"
  (cd "$ric_node_dir" && npm install --no-audit --no-fund --silent aws-lambda-ric)
  if [ ! -f "$ric_node/dist/rapid-client.node" ]; then
    # npm >= 11 runs install scripts only for approved packages.
    (cd "$ric_node_dir" && npm install-scripts approve aws-lambda-ric >/dev/null && npm rebuild aws-lambda-ric)
  fi
fi

export NIMBUS_TEST_PYTHON="$venv/bin/python" NIMBUS_TEST_RIC_PYTHON="$ric" NIMBUS_TEST_RIC_NODE="$ric_node" \
  NIMBUS_TEST_DURABLE_SDK="$durable_sdk" NIMBUS_TEST_DURABLE_SDK_NODE="$durable_sdk_node"
exec cargo test --workspace "$@"
