#!/usr/bin/env bash
# A small filesystem (tmpfs, 16 MiB) that a test can fill to the last byte,
# so a full disk is a real ENOSPC from the kernel, not an injected error.
# Mounting needs root, as CI runs.
#
#   eval "$(scripts/small_disk.sh start)"   # mounts it, exports WARMING_SMALL_DISK
#   scripts/small_disk.sh stop              # unmounts it
set -euo pipefail
dir=${WARMING_SMALL_DISK_DIR:-/tmp/warming-small-disk}

case "${1:-}" in
  start)
    mkdir -p "$dir"
    if ! mountpoint -q "$dir"; then
      mount -t tmpfs -o size=16m warming-small-disk "$dir" >&2
    fi
    echo "export WARMING_SMALL_DISK=$dir"
    ;;
  stop)
    if mountpoint -q "$dir"; then umount "$dir"; fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
