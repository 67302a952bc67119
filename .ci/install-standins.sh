#!/usr/bin/env bash
# Install the device stand-ins the target tests drive: OpenSSH's sshd and Debian's adb client.
# Idempotent and quiet; the tests skip what is missing, so this is best effort on a dev machine.
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v adb >/dev/null 2>&1 || need+=(adb)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { echo "install-standins: apt-get install ${need[*]} failed" >&2; exit 1; }
