#!/usr/bin/env bash
# Stop the one-node Slurm started by .ci/slurm-up.sh, by the PIDs it recorded.
SCRATCH="${SLURM_SCRATCH:-/tmp/p3d-slurm}"
for name in slurmd slurmctld munged; do
  if [ -f "$SCRATCH/$name.bg.pid" ]; then
    kill "$(cat "$SCRATCH/$name.bg.pid")" 2>/dev/null || true
    rm -f "$SCRATCH/$name.bg.pid"
  fi
done
# munged runs under su: its own PID file names the daemon itself
[ -f "$SCRATCH/munge/munged.pid" ] && kill "$(cat "$SCRATCH/munge/munged.pid")" 2>/dev/null
exit 0
