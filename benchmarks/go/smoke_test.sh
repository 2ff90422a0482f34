#!/usr/bin/env bash
# A Go baseline program prints "<key> <number>" for N = 1000 and refuses
# N = 0.  Usage: smoke_test.sh BINARY KEY
set -euo pipefail
binary="$1"
key="$2"
name="$(basename "${binary}")"

output="$("${binary}" 1000)"
if ! grep -Eqx "${key} [0-9]+(\.[0-9]+)?" <<<"${output}"; then
  echo "FAIL: ${name} 1000 printed: ${output}" >&2
  exit 1
fi
echo "${name} 1000: ${output}"

if "${binary}" 0 2>/dev/null; then
  echo "FAIL: ${name} 0 succeeded" >&2
  exit 1
fi
echo PASS
