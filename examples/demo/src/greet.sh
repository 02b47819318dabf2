#!/bin/sh
# Prints a greeting for the name given as the first argument.
echo "${GREETING:-Hello}, ${1:-world}!"
