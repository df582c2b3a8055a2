#!/usr/bin/env bash
# A private dbus-daemon + avahi-daemon pair for tests, with mDNS on lo only (never on eth0).
#
# Usage (as root):
#   tests/lib/avahi-lo.sh start DIR    start the pair, or reuse the one already running from DIR
#   tests/lib/avahi-lo.sh stop DIR     kill the pair by the PIDs in DIR
#   tests/lib/avahi-lo.sh status DIR   exit 0 if both run; prints what runs
# `start` prints one line, DBUS_SYSTEM_BUS_ADDRESS=unix:path=DIR/run/dbus/system_bus_socket, also
# kept in DIR/env; clients (agpu, avahi-browse, ...) need it in their environment:
#   export "$(tests/lib/avahi-lo.sh start /tmp/mdns)"; avahi-browse -atr
#
# Nothing outside DIR changes. Each daemon runs in its own mount namespace where DIR/run is
# bind-mounted over /run, so the machine's /run/dbus (and its stale-pid trap) and
# /run/avahi-daemon are never touched. avahi-daemon also gets a network namespace of its own
# holding only a lo: mDNS packets never reach the machine's interfaces (not even its lo), and
# several pairs (one per DIR) can run at once without hearing each other (two avahi-daemons
# on one lo share 127.0.0.1 and get each other's records wrong). Clients reach it over D-Bus,
# a unix socket, from any namespace; it resolves their services to 127.0.0.1, which is the
# caller's own loopback, so nodes listening on 127.0.0.1 find each other. Files:
#   DIR/avahi-daemon.conf       allow-interfaces=lo, deny-interfaces=eth0, IPv4 only, no
#                               wide-area, no workstation/hinfo records, no reflector
#   DIR/run/dbus/pid            dbus-daemon's PID (its /run/dbus/pid)
#   DIR/run/avahi-daemon/pid    avahi-daemon's PID
#   DIR/dbus.log, DIR/avahi.log their output (avahi-daemon runs in the foreground, --debug
#                               if AGPU_AVAHI_DEBUG=1)
# A stale PID file (crashed daemon, or a <defunct> one PID 1 has not reaped yet) is removed
# before starting, since either daemon refuses to start while its PID file names a live process.
#
# netns.sh reuses this script for its namespaces through the environment:
#   AGPU_AVAHI_NETNS=NAME      run both daemons inside `ip netns exec NAME`
#   AGPU_AVAHI_IFACE=IFACE     the one interface mDNS may use (default lo; eth0 is refused)
#   AGPU_AVAHI_HOSTNAME=NAME   the daemon's host-name (default agpu-lo-<checksum of DIR>)
set -euo pipefail

WAIT_TENTHS=50 # every wait below is bounded: 5 s

die() {
    echo "avahi-lo.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$cmd" in start | stop | status) ;; *) usage ;; esac
# it ends up in a D-Bus address and in sh -c arguments: keep it plain
[[ $dir =~ ^[A-Za-z0-9/._-]+$ ]] || die "DIR must be a plain path (letters, digits, / . _ -): $dir"
if [ "$cmd" = start ]; then
    mkdir -p "$dir"
elif [ ! -d "$dir" ]; then
    [ "$cmd" = stop ] && exit 0
    exit 1
fi
dir=$(cd "$dir" && pwd -P)
[[ $dir =~ ^[A-Za-z0-9/._-]+$ ]] || die "DIR must be a plain path (letters, digits, / . _ -): $dir"
iface=${AGPU_AVAHI_IFACE:-lo}
netns=${AGPU_AVAHI_NETNS:-}
[ "$iface" != eth0 ] || die "refusing to run mDNS on eth0, the machine's outside link"
dbus_pidfile=$dir/run/dbus/pid
avahi_pidfile=$dir/run/avahi-daemon/pid
bus_address=unix:path=$dir/run/dbus/system_bus_socket

# pid_of FILE COMM: the PID in FILE if that process is alive (not a zombie) and named COMM.
pid_of() {
    local pid stat rest
    [ -r "$1" ] || return 1
    read -r pid <"$1" 2>/dev/null || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    [ "${rest%% *}" != Z ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

# in_ns NET CMD...: CMD in a private mount namespace whose /run is DIR/run, detached from this
# script's session (setsid -f). NET=own also gives it a network namespace of its own holding
# just lo (for avahi-daemon on lo); else it runs in AGPU_AVAHI_NETNS, or the caller's.
in_ns() {
    local pre=() flags=(-m --propagation private) setup=:
    [ -z "$netns" ] || pre=(ip netns exec "$netns")
    if [ "$1" = own ]; then
        flags+=(-n)
        setup='ip link set lo up && ip route add 224.0.0.0/4 dev lo'
    fi
    shift
    # The daemons find the bus at /run/dbus, never through DIR (which their users may not
    # traverse): drop an address a caller exported.
    # shellcheck disable=SC2016 # $0, $1 and $@ are the inner shell's
    "${pre[@]}" env -u DBUS_SYSTEM_BUS_ADDRESS setsid -f unshare "${flags[@]}" \
        sh -c 'mount --bind "$0" /run && eval "$1" && shift && exec "$@"' "$dir/run" "$setup" "$@" \
        </dev/null
}

bus_has_avahi() {
    dbus-send --bus="$bus_address" --print-reply --dest=org.freedesktop.DBus \
        /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:org.freedesktop.Avahi \
        2>/dev/null | grep -q 'boolean true'
}

write_config() {
    local host=${AGPU_AVAHI_HOSTNAME:-agpu-lo-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)}
    cat >"$dir/avahi-daemon.conf" <<EOF
# Written by tests/lib/avahi-lo.sh: mDNS on $iface only, never on eth0.
[server]
host-name=$host
use-ipv4=yes
use-ipv6=no
allow-interfaces=$iface
deny-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-workstation=no
publish-hinfo=no
publish-aaaa-on-ipv4=no
publish-a-on-ipv6=no

[reflector]
enable-reflector=no

[rlimits]
EOF
}

# stop_one FILE COMM: SIGTERM, then SIGKILL after the bounded wait; a zombie counts as gone.
stop_one() {
    local pid i
    if pid=$(pid_of "$1" "$2"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < WAIT_TENTHS; i++)); do
            pid_of "$1" "$2" >/dev/null || break
            sleep 0.1
        done
        if pid_of "$1" "$2" >/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$1"
}

start_dbus() {
    local i
    rm -f "$dbus_pidfile" "$dir/run/dbus/system_bus_socket"
    in_ns shared dbus-daemon --system --nofork >>"$dir/dbus.log" 2>&1
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        if pid_of "$dbus_pidfile" dbus-daemon >/dev/null && [ -S "$dir/run/dbus/system_bus_socket" ]; then
            return 0
        fi
        sleep 0.1
    done
    tail -5 "$dir/dbus.log" >&2 || true
    die "dbus-daemon did not start (log: $dir/dbus.log)"
}

start_avahi() {
    local i debug=()
    [ "${AGPU_AVAHI_DEBUG:-0}" != 1 ] || debug=(--debug)
    rm -f "$avahi_pidfile"
    write_config
    local net=shared
    [ -n "$netns" ] || net=own
    in_ns "$net" avahi-daemon -f "$dir/avahi-daemon.conf" --no-rlimits --no-proc-title "${debug[@]}" \
        >>"$dir/avahi.log" 2>&1
    for ((i = 0; i < WAIT_TENTHS; i++)); do
        if pid_of "$avahi_pidfile" avahi-daemon >/dev/null && bus_has_avahi; then
            return 0
        fi
        sleep 0.1
    done
    tail -5 "$dir/avahi.log" >&2 || true
    die "avahi-daemon did not start (log: $dir/avahi.log; AGPU_AVAHI_DEBUG=1 for more)"
}

case "$cmd" in
start)
    [ "$(id -u)" -eq 0 ] || die "must run as root (it starts system daemons)"
    command -v avahi-daemon >/dev/null || die "no avahi-daemon: apt-get install avahi-daemon"
    command -v dbus-daemon >/dev/null || die "no dbus-daemon: apt-get install dbus"
    mkdir -p "$dir/run/dbus" "$dir/run/avahi-daemon"
    chmod 755 "$dir/run" "$dir/run/dbus"
    if ! pid_of "$dbus_pidfile" dbus-daemon >/dev/null; then
        stop_one "$avahi_pidfile" avahi-daemon # it would be talking to a dead bus
        start_dbus
    fi
    pid_of "$avahi_pidfile" avahi-daemon >/dev/null || start_avahi
    echo "DBUS_SYSTEM_BUS_ADDRESS=$bus_address" | tee "$dir/env"
    ;;
stop)
    stop_one "$avahi_pidfile" avahi-daemon
    stop_one "$dbus_pidfile" dbus-daemon
    rm -f "$dir/run/dbus/system_bus_socket" "$dir/run/avahi-daemon/socket"
    ;;
status)
    rc=0
    if pid=$(pid_of "$dbus_pidfile" dbus-daemon); then echo "dbus-daemon $pid"; else rc=1; fi
    if pid=$(pid_of "$avahi_pidfile" avahi-daemon); then echo "avahi-daemon $pid"; else rc=1; fi
    exit $rc
    ;;
esac
