#!/usr/bin/env bash
# A Go baseline program prints "<key> <number>" for a good N and refuses a
# bad one.  Usage: go_program_test.sh BINARY KEY
set -euo pipefail
binary="$1"
key="$2"

output="$("${binary}" 1000)"
if ! grep -Eqx "${key} [0-9]+(\.[0-9]+)?" <<<"${output}"; then
  echo "FAIL: ${binary} 1000 printed: ${output}" >&2
  exit 1
fi
echo "$(basename "${binary}") 1000: ${output}"

if "${binary}" 0 2>/dev/null; then
  echo "FAIL: ${binary} 0 succeeded" >&2
  exit 1
fi
echo PASS
