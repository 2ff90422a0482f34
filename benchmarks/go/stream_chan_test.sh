#!/usr/bin/env bash
# stream_chan prints "ns_per_message <number>" for a good N and refuses a bad one.
set -euo pipefail
binary="$1"

output="$("${binary}" 1000)"
if ! grep -Eqx 'ns_per_message [0-9]+(\.[0-9]+)?' <<<"${output}"; then
  echo "FAIL: stream_chan 1000 printed: ${output}" >&2
  exit 1
fi
echo "stream_chan 1000: ${output}"

if "${binary}" 0 2>/dev/null; then
  echo "FAIL: stream_chan 0 succeeded" >&2
  exit 1
fi
echo PASS
