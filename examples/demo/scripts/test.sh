#!/bin/sh
# A tiny test suite for src/greet.sh.
set -e
out=$(GREETING=Hi sh src/greet.sh Ada)
[ "$out" = "Hi, Ada!" ] || { echo "FAIL: got '$out'"; exit 1; }
echo "PASS greet with a name"
out=$(GREETING= sh src/greet.sh)
[ "$out" = "Hello, world!" ] || { echo "FAIL: got '$out'"; exit 1; }
echo "PASS greet without a name"
echo "greeting in this job: $GREETING"
