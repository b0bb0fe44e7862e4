#!/usr/bin/env bash
# Runs a command that must fail: a non-zero exit, exactly one line on stderr, containing TEXT.
# usage: expect_error.sh TEXT COMMAND [ARGS...]
text=$1
shift
err=$("$@" 2>&1 >/dev/null)
rc=$?
echo "exit $rc, stderr: $err"
[[ $rc -ne 0 ]] || { echo "expect_error: the command succeeded"; exit 1; }
[[ $(printf '%s\n' "$err" | wc -l) -eq 1 ]] || { echo "expect_error: stderr is not one line"; exit 1; }
[[ $err == *"$text"* ]] || { echo "expect_error: stderr lacks: $text"; exit 1; }
