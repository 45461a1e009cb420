#!/usr/bin/env bash
# A real one-host SLURM cluster (Debian's slurm-wlm + munge) for testing the SLURM recipe:
#   bash scripts/slurm-localhost.sh start [DIR]   # prints `export SLURM_CONF=DIR/slurm.conf`
#   bash scripts/slurm-localhost.sh stop  [DIR]
# Everything SLURM writes (config, state, spool, logs) lives under DIR (default
# /tmp/telucodec-slurm); the daemons run as root, which is what this machine and CI are.
# Two nodes are declared (n1, n2), both on this host, each with its own slurmd and port
# (`slurmd -N`), when this SLURM allows it; otherwise one (see NODES below and launch/README).
# Needs: apt-get install slurm-wlm munge (scripts/system-deps.sh installs them).
set -euo pipefail
cmd=${1:?usage: slurm-localhost.sh start|stop [DIR]}
DIR=${2:-${SLURM_TEST_DIR:-/tmp/telucodec-slurm}}
NODES=${SLURM_TEST_NODES:-2}
CPUS=$(nproc)
export SLURM_CONF="$DIR/slurm.conf"

stop() {
  local pids=()
  for pidfile in "$DIR"/slurmd-*.pid "$DIR"/slurmctld.pid; do
    [ -f "$pidfile" ] || continue
    pids+=("$(cat "$pidfile")")
    rm -f "$pidfile"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do   # the ports must be free before a restart binds them again
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
[ "$cmd" = start ] || { echo "slurm-localhost: unknown command $cmd" >&2; exit 2; }
for exe in slurmctld slurmd munged sinfo; do
  command -v "$exe" >/dev/null || { echo "slurm-localhost: $exe not found: run scripts/system-deps.sh" >&2; exit 1; }
done
stop
rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"   # a fresh cluster: no jobs or logs of an earlier one
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"

# munge: the daemon SLURM authenticates with; the Debian package made its key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
fi

nodelines=""
for i in $(seq 1 "$NODES"); do
  nodelines+="NodeName=n$i NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=$((17000 + i)) CPUs=$CPUS RealMemory=1000 State=UNKNOWN"$'\n'
done
cat >"$SLURM_CONF" <<CONF
ClusterName=telucodec-test
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire + 1 s (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=30
OverTimeLimit=0
PrologFlags=Alloc
$nodelines
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
# cgroup v1 as this container mounts it; slurmd loads a cgroup plugin even for linuxproc
cat >"$DIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CONF

slurmctld -i -f "$SLURM_CONF"
for i in $(seq 1 "$NODES"); do
  mkdir -p "$DIR/spool/n$i"
  slurmd -N "n$i" -f "$SLURM_CONF"
done
for _ in $(seq 1 60); do
  idle=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
  [ "$idle" -ge "$NODES" ] && break
  sleep 0.5
done
sinfo -N >&2
if [ "$idle" -lt "$NODES" ]; then
  echo "slurm-localhost: only $idle of $NODES nodes came up; logs in $DIR/log" >&2
  exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
