# shellcheck shell=bash
# tests/strongswan/lib.sh - run strongSwan's charon as a test peer inside
# network namespaces that the calling script creates and owns.
#
# Source it:   . tests/strongswan/lib.sh
# Rust tests:  bash -c '. tests/strongswan/lib.sh && sw_... '
#
# Everything a script creates (namespaces, charon processes, temp dirs) is
# recorded and undone by sw_cleanup; call sw_trap_cleanup once to run it on
# EXIT/INT/TERM.  Only processes started here are killed, by PID.
#
# Cross-process use (a Rust test guard): don't call sw_trap_cleanup; start
# with `bash -c '. lib.sh; sw_ns_pair A B; ...; sw_start_charon A DIR;
# sw_wait_vici DIR'` (charon keeps running after bash exits) and tear down
# with `bash -c '. lib.sh; sw_stop_charon DIR; sw_netns_del A B'` - the PID
# is kept in DIR/charon.pid.
#
# Conventions
#   NS   a network namespace name (make it unique, e.g. "gold-$$-a")
#   DIR  an instance directory (absolute path) holding strongswan.conf,
#        swanctl/ (SWANCTL_DIR), run/ (bind-mounted over /run), charon.log,
#        charon.vici (the vici socket) and charon.pid (outer PID).
#
# Requirements: root, iproute2, strongswan-charon, strongswan-swanctl,
# libcharon-extra-plugins (kernel-libipsec).  See /work/shared/TESTING.md.

SW_CHARON=${SW_CHARON:-/usr/lib/ipsec/charon}
SW_SWANCTL=${SW_SWANCTL:-swanctl}
# kernel-libipsec MUST precede kernel-netlink (the first IPsec backend wins;
# the kernel here has no ESP). kdf is needed for the IKEv2 PRF+; xcbc for
# AES-XCBC integrity and PRF (openssl has no XCBC).
SW_PLUGINS=${SW_PLUGINS:-"random nonce openssl xcbc kdf pem pkcs1 pkcs8 x509 pubkey revocation constraints kernel-libipsec kernel-netlink socket-default vici"}
# plugins swanctl itself needs to parse keys and certificates
SW_SWANCTL_PLUGINS=${SW_SWANCTL_PLUGINS:-"random nonce openssl pem pkcs1 pkcs8 x509 pubkey"}
# default filelog levels; override per instance via sw_write_strongswan_conf
SW_LOG_LEVELS=${SW_LOG_LEVELS:-"default = 1
ike = 2
cfg = 2"}

SW_NETNS_LIST=()
SW_PID_LIST=()
SW_TMP_LIST=()

sw_log() { printf '[sw] %s\n' "$*" >&2; }
sw_die() { printf '[sw] ERROR: %s\n' "$*" >&2; return 1; }

# sw_cleanup: kill the charon (and other registered) PIDs we started, delete
# our namespaces and temp dirs.  Idempotent.
sw_cleanup() {
    local pid ns d i
    for pid in "${SW_PID_LIST[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SW_PID_LIST[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SW_PID_LIST=()
    for ns in "${SW_NETNS_LIST[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    SW_NETNS_LIST=()
    for d in "${SW_TMP_LIST[@]}"; do
        [ -n "$d" ] && rm -rf -- "$d"
    done
    SW_TMP_LIST=()
}

# sw_trap_cleanup: install sw_cleanup on EXIT, INT and TERM.
sw_trap_cleanup() {
    trap 'sw_cleanup' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# sw_register_pid PID: have sw_cleanup kill PID (e.g. a tshark you started).
sw_register_pid() { SW_PID_LIST+=("$1"); }

# sw_mktemp VAR: create a temp dir that sw_cleanup removes, store its path
# in VAR (not via $(...): a subshell could not register it for cleanup).
sw_mktemp() {
    local _d
    _d=$(mktemp -d "${TMPDIR:-/tmp}/sw.XXXXXX") || return 1
    SW_TMP_LIST+=("$_d")
    printf -v "$1" '%s' "$_d"
}

# sw_netns_add NS: create a namespace with lo up; registered for cleanup.
sw_netns_add() {
    ip netns add "$1" || return 1
    SW_NETNS_LIST+=("$1")
    ip -n "$1" link set lo up
}

# sw_netns_del NS...: delete namespaces (for callers that manage lifetime
# themselves, e.g. a Rust test guard running `bash -c`).
sw_netns_del() {
    local ns
    for ns in "$@"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

# sw_ns_pair NSA NSB [ADDR_A] [ADDR_B] [POD_A] [POD_B] [IFA] [IFB]
# Two namespaces joined by a veth: IFA (default veth-a) in NSA with ADDR_A
# (default 192.0.2.1/24), IFB (default veth-b) in NSB with ADDR_B (default
# 192.0.2.2/24), and "pod" addresses POD_A/POD_B (default 10.96.1.1/32 and
# 10.96.2.1/32) on lo (this kernel has no dummy driver).  Pass "" for a pod
# address to skip it.
sw_ns_pair() {
    local nsa=$1 nsb=$2
    local addra=${3:-192.0.2.1/24} addrb=${4:-192.0.2.2/24}
    local poda=${5-10.96.1.1/32} podb=${6-10.96.2.1/32}
    local ifa=${7:-veth-a} ifb=${8:-veth-b}
    sw_netns_add "$nsa" || return 1
    sw_netns_add "$nsb" || return 1
    ip link add "$ifa" netns "$nsa" type veth peer name "$ifb" netns "$nsb" || return 1
    ip -n "$nsa" addr add "$addra" dev "$ifa"
    ip -n "$nsb" addr add "$addrb" dev "$ifb"
    ip -n "$nsa" link set "$ifa" up
    ip -n "$nsb" link set "$ifb" up
    [ -n "$poda" ] && ip -n "$nsa" addr add "$poda" dev lo
    [ -n "$podb" ] && ip -n "$nsb" addr add "$podb" dev lo
    return 0
}

# sw_instance_init DIR: create the instance directory layout.
sw_instance_init() {
    local dir=$1
    mkdir -p "$dir/run" "$dir/swanctl" || return 1
    local sub
    for sub in conf.d x509 x509ca x509ocsp x509aa x509ac x509crl private rsa ecdsa ed25519 ed448 bliss pkcs8 pkcs12 pubkey; do
        mkdir -p "$dir/swanctl/$sub"
    done
}

# sw_write_strongswan_conf DIR [LOG_LEVELS] [CHARON_EXTRA] [TOP_EXTRA]
# LOG_LEVELS: newline separated "subsys = level" lines for the filelog
#   (default $SW_LOG_LEVELS); use "ike = 4" to get the derived keys and
#   "chd = 4" for the CHILD_SA keys.
# CHARON_EXTRA: text inserted verbatim inside charon { } (e.g.
#   "fragment_size = 576").  TOP_EXTRA: text appended at top level.
# The log goes to DIR/charon.log, the vici socket is DIR/charon.vici.
sw_write_strongswan_conf() {
    local dir=$1 levels=${2:-$SW_LOG_LEVELS} extra=${3:-} top=${4:-}
    sw_instance_init "$dir" || return 1
    cat >"$dir/strongswan.conf" <<EOF
# generated by tests/strongswan/lib.sh
charon {
    load_modular = no
    load = $SW_PLUGINS
    install_virtual_ip = no
    filelog {
        main {
            path = $dir/charon.log
            append = no
            flush_line = yes
            time_format = %H:%M:%S
            ike_name = yes
$(printf '%s\n' "$levels" | sed 's/^/            /')
        }
    }
    syslog {
        daemon {
            default = -1
        }
    }
    plugins {
        vici {
            socket = unix://$dir/charon.vici
        }
    }
$(printf '%s\n' "$extra" | sed 's/^/    /')
}
swanctl {
    socket = unix://$dir/charon.vici
    load = $SW_SWANCTL_PLUGINS
}
pki {
    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey
}
$top
EOF
}

# sw_write_swanctl_conf DIR CONTENT: write DIR/swanctl/swanctl.conf.
sw_write_swanctl_conf() {
    local dir=$1
    sw_instance_init "$dir" || return 1
    printf '%s\n' "$2" >"$dir/swanctl/swanctl.conf"
}

# sw_conn_conf NAME LOCAL_ADDRS REMOTE_ADDRS IKE_PROPOSALS ESP_PROPOSALS AUTH
#              LOCAL_ID REMOTE_ID LOCAL_TS REMOTE_TS
#              [CONN_EXTRA] [LOCAL_EXTRA] [CHILD_EXTRA] [REMOTE_EXTRA]
# Print a swanctl "connections { NAME { ... children { NAME {...} } } }"
# block (IKEv2, start_action = none).  AUTH is used for both ends (psk,
# pubkey).  *_EXTRA are verbatim lines, e.g. CONN_EXTRA="mobike = no",
# LOCAL_EXTRA="certs = a.crt", CHILD_EXTRA="mode = tunnel".  Empty
# REMOTE_ADDRS means "%any" (a responder accepting anyone).
sw_conn_conf() {
    local name=$1 laddr=$2 raddr=${3:-%any} ike=$4 esp=$5 auth=$6
    local lid=$7 rid=$8 lts=$9 rts=${10} cx=${11:-} lx=${12:-} chx=${13:-} rx=${14:-}
    sed '/^[[:space:]]*$/d' <<EOF
connections {
    $name {
        version = 2
        local_addrs = $laddr
        remote_addrs = $raddr
        proposals = $ike
        $cx
        local {
            auth = $auth
            id = "$lid"
            $lx
        }
        remote {
            auth = $auth
            id = "$rid"
            $rx
        }
        children {
            $name {
                local_ts = $lts
                remote_ts = $rts
                esp_proposals = $esp
                start_action = none
                $chx
            }
        }
    }
}
EOF
}

# sw_psk_secret SECRET ID... : print a swanctl "secrets { ike-psk { ... } }"
# block binding SECRET to the given identities.
sw_psk_secret() {
    local secret=$1 i=0 id
    shift
    printf 'secrets {\n    ike-psk {\n'
    for id in "$@"; do
        i=$((i + 1))
        printf '        id-%d = "%s"\n' "$i" "$id"
    done
    printf '        secret = "%s"\n    }\n}\n' "$secret"
}

# sw_swanctl DIR ARGS...: run swanctl against the instance (outside any ns;
# the vici socket is a pathname socket, reachable from everywhere).
sw_swanctl() {
    local dir=$1
    shift
    STRONGSWAN_CONF="$dir/strongswan.conf" SWANCTL_DIR="$dir/swanctl" \
        "$SW_SWANCTL" "$@" --uri "unix://$dir/charon.vici"
}

# sw_start_charon NS DIR: start charon in NS with DIR/run bind-mounted on
# /run (charon hard-codes /run/charon.pid).  Writes the PID (which is
# charon's own, thanks to exec) to DIR/charon.pid and registers it.
# stdout/stderr go to DIR/charon.out.
sw_start_charon() {
    local ns=$1 dir=$2 pid
    [ -f "$dir/strongswan.conf" ] || { sw_die "no $dir/strongswan.conf"; return 1; }
    rm -f "$dir/charon.vici" "$dir/run/charon.pid"
    STRONGSWAN_CONF="$dir/strongswan.conf" \
        ip netns exec "$ns" sh -c 'mount --bind "$1/run" /run && exec "$2"' \
        sh "$dir" "$SW_CHARON" >"$dir/charon.out" 2>&1 </dev/null &
    pid=$!
    SW_PID_LIST+=("$pid")
    printf '%s\n' "$pid" >"$dir/charon.pid"
}

# sw_charon_pid DIR: print the PID recorded by sw_start_charon.
sw_charon_pid() { cat "$1/charon.pid"; }

# sw_wait_vici DIR [TIMEOUT_S=10]: poll until `swanctl --stats` answers.
sw_wait_vici() {
    local dir=$1 timeout=${2:-10} pid end
    pid=$(sw_charon_pid "$dir")
    end=$((SECONDS + timeout))
    while ((SECONDS < end)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$dir/charon.out" >&2
            sw_die "charon ($dir) died; see $dir/charon.out"
            return 1
        fi
        if [ -S "$dir/charon.vici" ] && sw_swanctl "$dir" --stats >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    sw_die "vici of $dir did not answer within ${timeout}s"
}

# sw_load DIR: swanctl --load-all (conns, creds, pools, authorities).
sw_load() {
    sw_swanctl "$1" --load-all --noprompt >"$1/load.out" 2>&1 || {
        cat "$1/load.out" >&2
        sw_die "swanctl --load-all failed for $1"
    }
}

# sw_initiate DIR CHILD [IKE] [TIMEOUT_S=20]: initiate CHILD (and its IKE_SA)
# and wait for the result (swanctl --initiate blocks until done).
sw_initiate() {
    local dir=$1 child=$2 ike=${3:-} timeout=${4:-20}
    local args=(--initiate --child "$child" --timeout "$timeout")
    [ -n "$ike" ] && args+=(--ike "$ike")
    sw_swanctl "$dir" "${args[@]}" >"$dir/initiate.out" 2>&1 || {
        cat "$dir/initiate.out" >&2
        sw_die "initiate $child failed for $dir"
    }
}

# sw_terminate DIR IKE [TIMEOUT_S=10]: terminate an IKE_SA (sends DELETE).
sw_terminate() {
    local dir=$1 ike=$2 timeout=${3:-10}
    sw_swanctl "$dir" --terminate --ike "$ike" --timeout "$timeout" >"$dir/terminate.out" 2>&1
}

# sw_rekey DIR --ike NAME | --child NAME: have charon start a rekey of the
# named IKE_SA or CHILD_SA (returns once it is queued, not when it is done).
sw_rekey() {
    local dir=$1 kind=$2 name=$3
    sw_swanctl "$dir" --rekey "$kind" "$name" >"$dir/rekey.out" 2>&1 || {
        cat "$dir/rekey.out" >&2
        sw_die "rekey $kind $name failed for $dir"
    }
}

# sw_wait_installed DIR CHILD [TIMEOUT_S=20]: poll `swanctl --list-sas`
# until CHILD is INSTALLED.
sw_wait_installed() {
    local dir=$1 child=$2 timeout=${3:-20} end
    end=$((SECONDS + timeout))
    while ((SECONDS < end)); do
        if sw_swanctl "$dir" --list-sas 2>/dev/null |
            grep -Eq "^ +${child}: #[0-9]+, reqid [0-9]+, INSTALLED"; then
            return 0
        fi
        sleep 0.1
    done
    sw_die "CHILD_SA $child of $dir not INSTALLED within ${timeout}s"
}

# sw_wait_log DIR REGEX [TIMEOUT_S=10]: poll until DIR/charon.log matches.
sw_wait_log() {
    local dir=$1 re=$2 timeout=${3:-10} end
    end=$((SECONDS + timeout))
    while ((SECONDS < end)); do
        grep -Eq -- "$re" "$dir/charon.log" 2>/dev/null && return 0
        sleep 0.1
    done
    sw_die "'$re' not in $dir/charon.log within ${timeout}s"
}

# sw_stop_charon DIR: SIGTERM charon (by recorded PID) and wait (bounded).
sw_stop_charon() {
    local dir=$1 pid i
    pid=$(sw_charon_pid "$dir") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# sw_tshark_start NS IFACE PCAP [FILTER]: capture in NS (registered PID);
# waits (bounded) until tshark reports the capture is running.
sw_tshark_start() {
    local ns=$1 ifc=$2 pcap=$3 filter=${4:-udp port 500 or udp port 4500} pid end
    rm -f "$pcap"
    ip netns exec "$ns" tshark -q -i "$ifc" -F pcap -w "$pcap" -f "$filter" \
        >"$pcap.out" 2>&1 </dev/null &
    pid=$!
    SW_PID_LIST+=("$pid")
    printf '%s\n' "$pid" >"$pcap.pid"
    end=$((SECONDS + 15))
    while ((SECONDS < end)); do
        grep -q "Capturing on" "$pcap.out" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$pcap.out" >&2; sw_die "tshark died"; return 1; }
        sleep 0.1
    done
    sw_die "tshark did not start"
}

# sw_tshark_stop PCAP [MIN_PACKETS]: stop the tshark writing PCAP after its
# file holds at least MIN_PACKETS (bounded wait; 0 = just stop).
sw_tshark_stop() {
    local pcap=$1 min=${2:-0} pid end n
    pid=$(cat "$pcap.pid") || return 1
    end=$((SECONDS + 10))
    while ((min > 0 && SECONDS < end)); do
        n=$(tshark -r "$pcap" 2>/dev/null | wc -l)
        ((n >= min)) && break
        sleep 0.2
    done
    kill -INT "$pid" 2>/dev/null || true
    for ((n = 0; n < 50; n++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
