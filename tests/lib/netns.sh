#!/usr/bin/env bash
# Several hosts on one machine: N network namespaces on one bridge, each with its own avahi-daemon.
#
# Usage (as root):
#   tests/lib/netns.sh up N DIR         namespaces n1..nN, node K at 10.200.0.K/24 on its mesh0
#   tests/lib/netns.sh down DIR         kill every process in them, delete them
#   tests/lib/netns.sh exec DIR K CMD...  run CMD in nK with nK's DBUS_SYSTEM_BUS_ADDRESS
#   tests/lib/netns.sh link-down K [DIR]  cut node K off the bridge (a silent partition)
#   tests/lib/netns.sh link-up K [DIR]    plug it back
#
# Layout: a namespace `hub` holds the bridge br0 and one veth end pK per node; the other end is
# mesh0 inside nK, with a multicast route. The host's namespace is never touched. In each nK a
# dbus-daemon and an avahi-daemon (allow-interfaces=mesh0, host-name nK) run through
# avahi-lo.sh, their files in DIR/nK: DIR/nK/env holds the DBUS_SYSTEM_BUS_ADDRESS a client in nK
# needs, DIR/nK/run/dbus/pid and DIR/nK/run/avahi-daemon/pid their PIDs, DIR/nK/*.log their
# output. link-down detaches pK from the bridge without dropping carrier, so nK and its avahi
# notice nothing: packets just stop, as when a switch port dies further away.
#
# AGPU_NETNS_PREFIX=p- (letters, digits, '-') names them p-hub, p-n1, ... so that two runs can
# coexist; `up` records it in DIR and the other commands read it from there.
set -euo pipefail

lib=$(cd "$(dirname "$0")" && pwd)
WAIT_TENTHS=50 # bounded waits: 5 s
MAX_NODES=250

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 up N DIR | down DIR | exec DIR K CMD... | link-down K [DIR] | link-up K [DIR]" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ $# -ge 1 ] || usage

# load_prefix [DIR]: the prefix recorded by `up`, else AGPU_NETNS_PREFIX.
load_prefix() {
    prefix=${AGPU_NETNS_PREFIX:-}
    if [ -n "${1:-}" ] && [ -r "$1/prefix" ]; then
        read -r prefix <"$1/prefix" || prefix=
    fi
    [[ $prefix =~ ^[a-z0-9-]*$ ]] || die "AGPU_NETNS_PREFIX may hold only a-z, 0-9 and '-'"
    hub=${prefix}hub
}

ns_exists() {
    [ -e "/run/netns/$1" ]
}

node_count() {
    local n
    read -r n <"$1/nodes" 2>/dev/null || n=0
    [[ $n =~ ^[0-9]+$ ]] || n=0
    echo "$n"
}

check_node() { # K N
    [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$2" ] || die "no node $1"
}

# live_pids NS: the processes in NS, less the zombies PID 1 has not reaped yet (they hold nothing).
live_pids() {
    local p st
    for p in $(ip netns pids "$1" 2>/dev/null); do
        st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        st=${st##*) }
        [ "${st%% *}" = Z ] || echo "$p"
    done
}

# kill_ns NS: SIGTERM every process left in NS, SIGKILL after the bounded wait.
kill_ns() {
    local pids i
    ns_exists "$1" || return 0
    mapfile -t pids < <(live_pids "$1")
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        mapfile -t pids < <(live_pids "$1")
        [ ${#pids[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

down() {
    local dir=$1 n k
    [ -r "$dir/nodes" ] || return 0 # not ours: never touch namespaces DIR did not record
    load_prefix "$dir"
    n=$(node_count "$dir")
    for ((k = 1; k <= n; k++)); do
        [ ! -d "$dir/n$k" ] || "$lib/avahi-lo.sh" stop "$dir/n$k"
        kill_ns "${prefix}n$k"
        ! ns_exists "${prefix}n$k" || ip netns del "${prefix}n$k"
    done
    kill_ns "$hub"
    ! ns_exists "$hub" || ip netns del "$hub"
    rm -f "$dir/nodes"
}

up() {
    local n=$1 dir=$2 k ns
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAX_NODES ] || die "N must be 1..$MAX_NODES"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -r "$dir/nodes" ]; then
        load_prefix "$dir"
        die "$dir already holds $(node_count "$dir") namespaces: netns.sh down $dir first"
    fi
    load_prefix ""
    ! ns_exists "$hub" || die "namespace $hub exists (another run? netns.sh down ITS_DIR, or set AGPU_NETNS_PREFIX)"
    for ((k = 1; k <= n; k++)); do
        ! ns_exists "${prefix}n$k" || die "namespace ${prefix}n$k exists"
    done
    echo "$prefix" >"$dir/prefix"
    echo "$n" >"$dir/nodes"
    trap 'echo "netns.sh: up failed, cleaning up" >&2; down "$dir"' ERR
    ip netns add "$hub"
    ip -n "$hub" link add br0 type bridge mcast_snooping 0
    ip -n "$hub" link set br0 up
    for ((k = 1; k <= n; k++)); do
        ns=${prefix}n$k
        ip netns add "$ns"
        ip -n "$hub" link add "p$k" type veth peer name mesh0 netns "$ns"
        ip -n "$hub" link set "p$k" master br0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "10.200.0.$k/24" brd + dev mesh0
        ip -n "$ns" link set mesh0 up
        ip -n "$ns" route add 224.0.0.0/4 dev mesh0
    done
    for ((k = 1; k <= n; k++)); do
        AGPU_AVAHI_NETNS=${prefix}n$k AGPU_AVAHI_IFACE=mesh0 AGPU_AVAHI_HOSTNAME=${prefix}n$k \
            "$lib/avahi-lo.sh" start "$dir/n$k" >/dev/null
        echo "${prefix}n$k 10.200.0.$k $(cat "$dir/n$k/env")"
    done
    trap - ERR
}

cmd=$1
shift
case "$cmd" in
up)
    [ $# -eq 2 ] || usage
    up "$1" "$2"
    ;;
down)
    [ $# -eq 1 ] || usage
    [ -d "$1" ] || die "no directory $1"
    down "$(cd "$1" && pwd)"
    ;;
exec)
    [ $# -ge 3 ] || usage
    dir=$(cd "$1" && pwd)
    load_prefix "$dir"
    check_node "$2" "$(node_count "$dir")"
    env_line=$(cat "$dir/n$2/env")
    ns=${prefix}n$2
    shift 2
    exec ip netns exec "$ns" env "$env_line" "$@"
    ;;
link-down | link-up)
    [ $# -ge 1 ] && [ $# -le 2 ] || usage
    load_prefix "${2:-}"
    ns_exists "$hub" || die "no namespace $hub"
    ip -n "$hub" link show "p$1" >/dev/null 2>&1 || die "no node $1"
    if [ "$cmd" = link-down ]; then
        ip -n "$hub" link set "p$1" nomaster
    else
        ip -n "$hub" link set "p$1" master br0
    fi
    ;;
*) usage ;;
esac
