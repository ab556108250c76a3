#!/bin/bash
# Regenerate the charon golden captures in this directory.
#
#   sudo ike/tests/data/charon/capture.sh [SCENARIO...]
#
# Scenarios (default: all): psk-gcm-x25519 psk-cbc-ecp256 ecdsa-gcm-ecp256
#                           invalid-ke rsa-frag psk-vip-pool
# Each one runs two charons (strongSwan 5.9.8, kernel-libipsec) in a pair of
# fresh network namespaces joined by a veth, captures the IKE/ESP traffic
# with tshark on the initiator's veth, and writes <scenario>/ with the
# per-message hex files, messages.txt, keys.txt and trimmed charon logs
# (see README.md).  Needs root, strongswan-charon, strongswan-swanctl,
# strongswan-pki, libcharon-extra-plugins, tshark, iproute2, python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
# shellcheck source=../../../../tests/strongswan/lib.sh
. "$ROOT/tests/strongswan/lib.sh"

[ "$(id -u)" = 0 ] || { echo "capture.sh: must run as root" >&2; exit 1; }

ALL_SCENARIOS="psk-gcm-x25519 psk-cbc-ecp256 ecdsa-gcm-ecp256 invalid-ke rsa-frag psk-vip-pool"
# ike = 4 dumps the IKE key material, chd = 4 the CHILD_SA keys, enc = 3 the
# decrypted ("plain") SK payload contents, net = 2 each packet sent/received.
LOG_LEVELS="default = 1
ike = 4
chd = 4
enc = 3
cfg = 2
net = 2
esp = 1
knl = 1"

A_OUTER=192.0.2.1 B_OUTER=192.0.2.2
A_POD=10.96.1.1 B_POD=10.96.2.1
A_NET=10.96.1.0/24 B_NET=10.96.2.0/24
PSK="esprit-golden-psk-0123456789"
DN_BASE="C=CN, O=Local Cluster"

# swanctl_conf SIDE(a|b) IKE_PROPOSALS ESP_PROPOSALS AUTH(psk|pubkey) LID RID [CONN_EXTRA]
swanctl_conf() {
    local side=$1 ike=$2 esp=$3 auth=$4 lid=$5 rid=$6 extra=${7:-}
    local me peer lts rts local_extra=""
    if [ "$side" = a ]; then
        me=$A_OUTER peer=$B_OUTER lts=$A_NET rts=$B_NET
    else
        me=$B_OUTER peer=$A_OUTER lts=$B_NET rts=$A_NET
    fi
    [ "$auth" = pubkey ] && local_extra="certs = $side.crt"
    sw_conn_conf gold "$me" "$peer" "$ike" "$esp" "$auth" "$lid" "$rid" \
        "$lts" "$rts" "$extra" "$local_extra"
    if [ "$auth" = psk ]; then
        sw_psk_secret "$PSK" "$DN_BASE, CN=site-a" "$DN_BASE, CN=site-b"
    fi
    return 0
}

# make_pki OUTDIR WORKDIR TYPE(ecdsa|rsa) SIZE: CA + edge1 (initiator) +
# edge2 (responder).  Writes ca.crt, edgeN.crt and edgeN.key (PKCS#8) to
# OUTDIR; the CA key stays in WORKDIR.
make_pki() {
    local out=$1 work=$2 type=$3 size=$4 cn
    printf 'pki {\n    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey\n}\n' >"$work/pki.conf"
    local -x STRONGSWAN_CONF=$work/pki.conf
    pki --gen --type "$type" --size "$size" --outform pem >"$work/ca.key"
    pki --self --ca --lifetime 3650 --in "$work/ca.key" --type "$type" \
        --dn "$DN_BASE, CN=Esprit Golden CA" --outform pem >"$out/ca.crt"
    for cn in edge1 edge2; do
        pki --gen --type "$type" --size "$size" --outform pem >"$work/$cn.key"
        pki --pub --in "$work/$cn.key" --type "$type" |
            pki --issue --lifetime 1825 --cacert "$out/ca.crt" --cakey "$work/ca.key" \
                --dn "$DN_BASE, CN=$cn" --san "$cn" --outform pem >"$out/$cn.crt"
        openssl pkey -in "$work/$cn.key" -out "$out/$cn.key"
    done
}

# send_icmp NS SRC DST: one ICMP echo through the tunnel, wait (<=3 s) for
# the reply.  Fixed payload so the ESP plaintext is predictable.
send_icmp() {
    ip netns exec "$1" python3 - "$2" "$3" <<'EOF'
import socket, struct, sys, time
src, dst = sys.argv[1], sys.argv[2]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
data = b"esprit golden ESP test payload!!"
hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4553, 1)
pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + data), 0x4553, 1) + data
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((src, 0))
s.settimeout(3)
s.sendto(pkt, (dst, 0))
end = time.time() + 3
while time.time() < end:
    r = s.recv(2048)
    if r[20] == 0 and r[24:26] == b"\x45\x53":
        print("icmp echo reply received"); sys.exit(0)
sys.exit("no echo reply")
EOF
}

# run_scenario NAME TITLE IKE_I ESP AUTH [IKE_R] [CHARON_EXTRA] [CONN_EXTRA] [PKI]
#              [TOP_EXTRA]
# IKE_I/IKE_R: the initiator's/responder's IKE proposals (IKE_R defaults to
# IKE_I). PKI: "ecdsa 256" or "rsa 3072" for certificate scenarios.
# TOP_EXTRA: swanctl.conf text after the connection (e.g. a pools section).
run_scenario() (
    local name=$1 title=$2 ike_i=$3 esp=$4 auth=$5 ike_r=${6:-$3}
    local charon_extra=${7:-} conn_extra=${8:-} pki_spec=${9:-} top_extra=${10:-}
    local out="$HERE/$name"
    sw_trap_cleanup
    local w nsa nsb lid rid
    sw_mktemp w
    nsa="gold-$$-${name:0:8}-a" nsb="gold-$$-${name:0:8}-b"
    mkdir -p "$out"
    sw_log "== $name: $title"
    sw_ns_pair "$nsa" "$nsb" "$A_OUTER/24" "$B_OUTER/24" "$A_POD/32" "$B_POD/32"

    sw_write_strongswan_conf "$w/a" "$LOG_LEVELS" "$charon_extra"
    sw_write_strongswan_conf "$w/b" "$LOG_LEVELS" "$charon_extra"
    if [ "$auth" = psk ]; then
        lid="$DN_BASE, CN=site-a" rid="$DN_BASE, CN=site-b"
    else
        lid="$DN_BASE, CN=edge1" rid="$DN_BASE, CN=edge2"
        rm -f "$out"/*.crt "$out"/*.key
        # shellcheck disable=SC2086
        make_pki "$out" "$w" $pki_spec
        cp "$out/ca.crt" "$w/a/swanctl/x509ca/ca.crt"
        cp "$out/ca.crt" "$w/b/swanctl/x509ca/ca.crt"
        cp "$out/edge1.crt" "$w/a/swanctl/x509/a.crt"
        cp "$out/edge1.key" "$w/a/swanctl/pkcs8/a.pem"
        cp "$out/edge2.crt" "$w/b/swanctl/x509/b.crt"
        cp "$out/edge2.key" "$w/b/swanctl/pkcs8/b.pem"
    fi
    sw_write_swanctl_conf "$w/a" "$(swanctl_conf a "$ike_i" "$esp" "$auth" "$lid" "$rid" "$conn_extra")
$top_extra"
    sw_write_swanctl_conf "$w/b" "$(swanctl_conf b "$ike_r" "$esp" "$auth" "$rid" "$lid" "$conn_extra")
$top_extra"

    sw_start_charon "$nsa" "$w/a"
    sw_start_charon "$nsb" "$w/b"
    sw_wait_vici "$w/a" 10
    sw_wait_vici "$w/b" 10
    sw_load "$w/a"
    sw_load "$w/b"

    sw_tshark_start "$nsa" veth-a "$w/cap.pcap"
    sw_initiate "$w/a" gold gold 20
    sw_wait_installed "$w/a" gold 20
    sw_wait_installed "$w/b" gold 5
    # kernel-netlink reports ipsec0's routes as an address change about
    # 0.1-0.5 s later; charon then sends a MOBIKE update (INFORMATIONAL with
    # N(NO_ADD_ADDR)).  Let it finish so the capture order is stable.
    sw_wait_log "$w/a" "(parsed|generating) INFORMATIONAL response [0-9]+ " 3 2>/dev/null ||
        sw_log "(no MOBIKE update this time)"
    send_icmp "$nsa" "$A_POD" "$B_POD" >&2
    sw_terminate "$w/a" gold 10
    sw_wait_log "$w/b" "IKE_SA deleted" 5 || true
    local npk
    npk=$(grep -Ec '\[NET\] <[^>]*> (sending|received) packet' "$w/a/charon.log")
    sw_tshark_stop "$w/cap.pcap" $((npk + 2))
    sw_stop_charon "$w/a"
    sw_stop_charon "$w/b"

    cp "$w/cap.pcap" "$out/capture.pcap"
    sed "s|$w/a|INSTANCE_DIR|g" "$w/a/strongswan.conf" >"$out/strongswan.conf"
    sed "s|$w/a|INSTANCE_DIR|g" "$w/a/swanctl/swanctl.conf" >"$out/swanctl-initiator.conf"
    sed "s|$w/b|INSTANCE_DIR|g" "$w/b/swanctl/swanctl.conf" >"$out/swanctl-responder.conf"
    python3 "$HERE/extract.py" --pcap "$out/capture.pcap" \
        --init-log "$w/a/charon.log" --resp-log "$w/b/charon.log" \
        --initiator "$A_OUTER" --out "$out" --title "$name: $title"
    sw_log "$name: $(grep -c '^[0-9]' "$out/messages.txt") packets"
)

scenario() {
    case $1 in
    psk-gcm-x25519)
        run_scenario "$1" "PSK, IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16" \
            aes128gcm16-prfsha256-x25519 aes128gcm16 psk ;;
    psk-cbc-ecp256)
        run_scenario "$1" "PSK, IKE aes128-sha256-ecp256, ESP aes128-sha256" \
            aes128-sha256-ecp256 aes128-sha256 psk ;;
    ecdsa-gcm-ecp256)
        run_scenario "$1" "ECDSA P-256 certificates, IKE aes256gcm16-prfsha384-ecp256, ESP aes256gcm16" \
            aes256gcm16-prfsha384-ecp256 aes256gcm16 pubkey "" "" "" "ecdsa 256" ;;
    invalid-ke)
        # the initiator offers x25519 and ecp256 and sends a KE for x25519;
        # the responder only accepts ecp256 -> INVALID_KE_PAYLOAD, retry.
        run_scenario "$1" "PSK, initiator KE x25519, responder wants ecp256 (INVALID_KE_PAYLOAD, retry)" \
            aes128gcm16-prfsha256-x25519-ecp256 aes128gcm16 psk \
            aes128gcm16-prfsha256-ecp256 ;;
    rsa-frag)
        run_scenario "$1" "RSA-3072 certificates, IKE aes128gcm16-prfsha256-x25519, fragmented IKE_AUTH (RFC 7383)" \
            aes128gcm16-prfsha256-x25519 aes128gcm16 pubkey "" "" \
            "fragmentation = yes" "rsa 3072" ;;
    psk-vip-pool)
        # Configuration payload (RFC 7296 3.15): the initiator asks for a virtual
        # IP (vips), the responder assigns one from its pool with a DNS server.
        # vips only matters to an initiator and pools only to a responder, so both
        # sides take the same lines; the selectors stay the pods' subnets.
        run_scenario "$1" "PSK, CFG_REQUEST for 0.0.0.0, CFG_REPLY from pool 10.3.0.0/24 with DNS" \
            aes128gcm16-prfsha256-x25519 aes128gcm16 psk "" "" \
            "vips = 0.0.0.0
        pools = gold" "" "pools {
    gold {
        addrs = 10.3.0.0/24
        dns = 10.3.0.53
    }
}" ;;
    *) echo "unknown scenario $1 (have: $ALL_SCENARIOS)" >&2; return 1 ;;
    esac
}

# shellcheck disable=SC2086
for s in ${@:-$ALL_SCENARIOS}; do
    scenario "$s"
done
