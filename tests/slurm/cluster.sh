#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `slurm` and for trying a sweep
# on SLURM locally. Root, Debian's packages, no systemd; all state, logs and sockets under $MSA_SLURM_DIR.
#
#   tests/slurm/cluster.sh start     # installs the packages if missing, starts munged, slurmctld, slurmd
#   export SLURM_CONF=/tmp/msa_slurm/slurm.conf
#   tests/slurm/cluster.sh stop      # cancels its jobs, stops the daemons it started (by PID)
#
# Both are idempotent: start leaves a running cluster as it is, stop does nothing when none runs.
set -euo pipefail

DIR=${MSA_SLURM_DIR:-/tmp/msa_slurm}
CONF=$DIR/slurm.conf
DAEMONS=(munged slurmctld slurmd)

running() {  # $1: a daemon; true if the PID in its pidfile is that daemon, alive
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return
    export DEBIAN_FRONTEND=noninteractive
    local packages=(slurmctld slurmd slurm-client munge) log=$DIR/log/apt.log
    mkdir -p "$DIR/log"
    apt-get install -y -q --no-install-recommends "${packages[@]}" >"$log" 2>&1 \
        || { apt-get update -q >>"$log" 2>&1 && apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$log" 2>&1; } \
        || { tail -n 20 "$log" >&2; echo "cluster.sh: could not install ${packages[*]} (see $log)" >&2; exit 1; }
}

configure() {
    mkdir -p "$DIR/log" "$DIR/ctld" "$DIR/spool" "$DIR/munge"
    chmod 700 "$DIR/munge"
    [[ -s $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key"
    local host
    host=$(hostname -s)
    # task/affinity and proctrack/linuxproc: no cgroups needed. No accounting (no slurmdbd): sacct
    # fails, as on many small clusters. Short KillWait, cred_expire (the wait before a requeued job
    # may start again) and sched_interval (when it does: 60 s by default) keep requeues quick.
    cat > "$CONF" <<CONF
ClusterName=msa
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
DefMemPerCPU=1000
JobRequeue=1
KillWait=2
ReturnToService=2
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(nproc) * 1024 )) State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    if running munged && running slurmctld && running slurmd; then
        echo "cluster.sh: already running (export SLURM_CONF=$CONF)"
        return
    fi
    stop  # whatever half of it a failed start left
    install
    configure
    export SLURM_CONF=$CONF
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    slurmctld -c -f "$CONF"  # -c: no jobs or node states left from an earlier cluster
    slurmd -f "$CONF"
    for _ in $(seq 100); do
        [[ $(sinfo -h -o %t 2>/dev/null) == idle ]] && { echo "cluster.sh: started (export SLURM_CONF=$CONF)"; return; }
        sleep 0.2
    done
    echo "cluster.sh: the node did not become idle in 20 s; see $DIR/log/" >&2
    tail -n 5 "$DIR"/log/*.log >&2
    exit 1
}

stop() {
    if running slurmctld; then  # its jobs' processes are not the daemons' children: cancel them first
        SLURM_CONF=$CONF scancel --full --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(SLURM_CONF=$CONF squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    local daemon pids=() pid alive
    for daemon in "${DAEMONS[@]}"; do
        running "$daemon" && pids+=("$(cat "$DIR/$daemon.pid")")
        rm -f "$DIR/$daemon.pid"
    done
    ((${#pids[@]})) || return 0
    kill "${pids[@]}"  # all at once: each takes about 2 s to stop
    for _ in $(seq 100); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

case ${1:-} in
    start) start ;;
    stop) stop; echo "cluster.sh: stopped" ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
