#!/usr/bin/env bash
# Start a one-node Slurm on this machine, as root, without systemd, for the HPC tests.
# Installs Debian's slurmctld, slurmd, slurm-client and munge when missing. State, logs,
# PIDs and slurm.conf go to $SLURM_SCRATCH (default /tmp/p3d-slurm); the environment to
# use it is written to $SLURM_SCRATCH/env (source it: it exports SLURM_CONF).
# Stop it with .ci/slurm-down.sh.
set -euo pipefail
SCRATCH="${SLURM_SCRATCH:-/tmp/p3d-slurm}"
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
mkdir -p "$SCRATCH"/{state,spool,log,munge}
chmod 711 "$SCRATCH/munge"
chown munge:munge "$SCRATCH/munge"
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
SOCKET="$SCRATCH/munge/munge.socket"
cat > "$SCRATCH/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=${NODE}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCKET}
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${SCRATCH}/state
SlurmdSpoolDir=${SCRATCH}/spool
SlurmctldPidFile=${SCRATCH}/slurmctld.pid
SlurmdPidFile=${SCRATCH}/slurmd.pid
SlurmctldLogFile=${SCRATCH}/log/slurmctld.log
SlurmdLogFile=${SCRATCH}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$SCRATCH/slurm.conf"
su -s /bin/sh munge -c "munged -F --socket=$SOCKET --key-file=/etc/munge/munge.key \
  --pid-file=$SCRATCH/munge/munged.pid --log-file=$SCRATCH/log/munged.log" \
  >>"$SCRATCH/log/munged.out" 2>&1 &
echo $! > "$SCRATCH/munged.bg.pid"
for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" >>"$SCRATCH/log/slurmctld.out" 2>&1 &
echo $! > "$SCRATCH/slurmctld.bg.pid"
slurmd -D -f "$SLURM_CONF" >>"$SCRATCH/log/slurmd.out" 2>&1 &
echo $! > "$SCRATCH/slurmd.bg.pid"
for _ in $(seq 100); do
  if sinfo -h -o %t 2>/dev/null | grep -q idle; then
    echo "export SLURM_CONF=$SLURM_CONF" > "$SCRATCH/env"
    echo "slurm up: node $NODE idle, SLURM_CONF=$SLURM_CONF" >&2
    exit 0
  fi
  sleep 0.2
done
echo "slurm did not come up; logs in $SCRATCH/log" >&2
exit 1
