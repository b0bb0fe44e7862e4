#!/usr/bin/env bash
# Runs a command that must fail: exactly one line on stderr, containing TEXT, and a non-zero exit
# (with --code N: exactly N, from the README's table of exit codes).
# usage: expect_error.sh [--code N] TEXT COMMAND [ARGS...]
want=""
if [[ $1 == --code ]]; then want=$2; shift 2; fi
text=$1
shift
err=$("$@" 2>&1 >/dev/null)
rc=$?
echo "exit $rc, stderr: $err"
[[ $rc -ne 0 ]] || { echo "expect_error: the command succeeded"; exit 1; }
[[ -z $want || $rc -eq $want ]] || { echo "expect_error: exit code $rc, expected $want"; exit 1; }
[[ $(printf '%s\n' "$err" | wc -l) -eq 1 ]] || { echo "expect_error: stderr is not one line"; exit 1; }
[[ $err == *"$text"* ]] || { echo "expect_error: stderr lacks: $text"; exit 1; }
