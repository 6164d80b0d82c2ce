#!/usr/bin/env bash
# How long a burst of products takes to be processed when the image server is slow (each
# image answered DELAY_MS late, like a distant host), against the stack `make run` started.
# Compare IMAGE_JOBS_IN_FLIGHT settings: `IMAGE_JOBS_IN_FLIGHT=1 make run` vs `make run`.
# Usage: scripts/measure-throughput.sh [COUNT] [DELAY_MS]
exec "$(dirname "$0")/measure-latency.sh" "${1:-24}" --burst "${2:-500}"
