#!/bin/sh
# Fails when a script lacks a shebang line.
for f in src/*.sh scripts/*.sh; do head -n1 "$f" | grep -q '^#!' || { echo "missing shebang: $f"; exit 1; }; done
echo "all scripts have a shebang"
