#!/usr/bin/env bash
# Exits 0 when kind can be used here: a Docker engine answers, or e2e/kind/docker.sh can start
# one (installing Debian's docker.io if needed). Prints "kind" then, nothing otherwise, so a
# Makefile can pick its default:
#   CLUSTER ?= $(shell bash e2e/kind/available.sh 2>/dev/null || echo local)
# Quiet unless it fails; starting the engine takes about a second once installed.
set -euo pipefail
if timeout 20 docker info >/dev/null 2>&1; then echo kind; exit 0; fi
if [ "$(id -u)" = 0 ] && bash "$(dirname "$0")/docker.sh" start >/dev/null 2>&1; then echo kind; exit 0; fi
exit 1
