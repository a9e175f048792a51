#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real (SIPp from sip-tester; the Redis
# store's contract tests start their own redis-server; the cluster test runs Kamailio; the media
# tests start their own rtpengine, userspace only; baresip is the softphone of the media tests).
# Idempotent: does nothing when they are already there.
set -euo pipefail
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v rtpengine >/dev/null 2>&1 || need+=(rtpengine-daemon)
command -v baresip >/dev/null 2>&1 || need+=(baresip-core)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
