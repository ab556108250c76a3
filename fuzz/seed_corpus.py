#!/usr/bin/env python3
"""Writes the checked-in seed corpus of every fuzz target, fuzz/corpus/<target>/, from the
strongSwan charon captures in ike/tests/data/charon/ (real IKE messages and ESP packets).

Each seed is named by the SHA-1 of its bytes, as libFuzzer names corpus files; running
this again gives the same files. With cargo-fuzz installed, `cargo fuzz cmin <target>`
minimizes a corpus grown from these seeds; the checked-in corpora of the six IKE/ESP
targets are this script's seeds after `cargo +nightly fuzz cmin -O` (2026-12-07), and
relay_decode's is what a 10-minute run grew from its seeds, after the same `cmin`.
"""

import glob
import hashlib
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.join(HERE, "..", "ike", "tests", "data", "charon")


def captures():
    """(scenario, name, bytes) of every captured datagram, in capture order."""
    for path in sorted(glob.glob(os.path.join(CAPTURES, "*", "[0-9][0-9]-*.hex"))):
        name = os.path.basename(path)
        if name.endswith(".plain.hex"):
            continue
        with open(path) as f:
            data = bytes.fromhex(f.read().strip())
        yield os.path.basename(os.path.dirname(path)), name, data


def is_ike(name):
    return not re.match(r"\d\d-esp-", name)


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    for seed in seeds:
        with open(os.path.join(out, hashlib.sha1(seed).hexdigest()), "wb") as f:
            f.write(seed)


def chain(first, buf):
    """(type, body) of each payload of a chain starting with a payload of type `first`."""
    kind, pos = first, 0
    while kind != 0 and pos + 4 <= len(buf):
        length = int.from_bytes(buf[pos + 2:pos + 4], "big")
        if length < 4:
            return
        yield kind, buf[pos + 4:pos + length]
        kind, pos = buf[pos], pos + length


def inner_chains():
    """(scenario, first payload type, chain) of every message: the plain one, and the
    decrypted inner chain of each `.plain.hex` (its first type read from the SK header)."""
    for path in sorted(glob.glob(os.path.join(CAPTURES, "*", "[0-9][0-9]-*.hex"))):
        name = os.path.basename(path)
        if re.match(r"\d\d-esp-", name) or name.endswith(".plain.hex"):
            continue
        scenario = os.path.basename(os.path.dirname(path))
        with open(path) as f:
            msg = bytes.fromhex(f.read().strip())
        yield scenario, msg[16], msg[28:]
        plain = path[:-len(".hex")] + ".plain.hex"
        if os.path.exists(plain):
            sk = [b for k, b in chain(msg[16], msg[28:]) if k == 46]
            # The SK payload's own header (before its body) names the first inner type.
            pos = msg.index(sk[0]) - 4 if sk else None
            if pos is not None:
                with open(plain) as f:
                    yield scenario, msg[pos], bytes.fromhex(f.read().strip())


def relay_chain(notifies):
    """A chain of Notify payloads (protocol 0, no SPI) of (type, data), behind the
    first payload's type (41, N)."""
    out = bytearray([41])
    for i, (kind, data) in enumerate(notifies):
        last = i == len(notifies) - 1
        out += bytes([0 if last else 41, 0]) + (8 + len(data)).to_bytes(2, "big")
        out += bytes([0, 0]) + kind.to_bytes(2, "big") + data
    return bytes(out)


def text_seeds(target, texts):
    write(target, [t.encode() for t in texts])


def main():
    caps = list(captures())
    ike = [d for _, n, d in caps if is_ike(n)]
    esp = [d for _, n, d in caps if not is_ike(n)]
    # ike_decode: one whole IKE message.
    write("ike_decode", ike)
    # ike_responder: a split byte (0: everything goes to port 4500), then the datagram;
    # the requests the charon initiators sent.
    write("ike_responder", [b"\x00" + d for _, n, d in caps if is_ike(n) and "-req" in n])
    # ike_initiator: length-prefixed datagrams; each scenario's responses in order, so
    # INVALID_KE's two IKE_SA_INIT responses come as a sequence.
    by_scenario = {}
    for s, n, d in caps:
        if is_ike(n) and "-resp" in n:
            by_scenario.setdefault(s, []).append(len(d).to_bytes(2, "big") + d)
    write("ike_initiator", [b"".join(v) for v in by_scenario.values()])
    # ike_mutate: a message selector byte and mutation ops; capture bytes as ops.
    write("ike_mutate", [bytes([i]) + d[:24] for i, d in enumerate(ike[:8])])
    # natt_demux: port-4500 datagrams as received: ESP as is, IKE behind the non-ESP
    # marker (RFC 3948 2.2), and a NAT keepalive.
    write("natt_demux", esp + [b"\x00\x00\x00\x00" + d for d in ike] + [b"\xff"])
    # esp_decap: mode 0 (AES-GCM-128, no ESN), window top 0, then each captured ESP
    # packet as one raw record (tag 0).
    write("esp_decap", [bytes(9) + bytes([0, min(len(d), 255)]) + d[:255] for d in esp])
    # esp_decap_cbc: a mode byte per AES key size and HMAC (ESN on the odd ones), window
    # top 0, then one record the target forges (tag 1: sequence number 1 and a tunnel-mode
    # IPv4 plaintext, 10.0.0.1 -> 10.0.0.2, with padding 1..10, Pad Length and Next
    # Header 4: two AES blocks) and the first captured packet as a raw record (tag 0).
    ipv4 = bytes.fromhex("4500001400000000 40fd0000 0a000001 0a000002".replace(" ", ""))
    plain = ipv4 + bytes(range(1, 11)) + bytes([10, 4])
    forged = (1).to_bytes(8, "big") + plain
    cbc_seeds = []
    for mode in [0x08, 0x05, 0x12, 0x1b, 0x00, 0x1c]:
        seed = bytes([mode]) + bytes(8) + bytes([1, len(forged)]) + forged
        cbc_seeds.append(seed + bytes([0, min(len(esp[0]), 255)]) + esp[0][:255])
    write("esp_decap_cbc", cbc_seeds)
    chains = list(inner_chains())
    # cp_decode: every CP payload body charon sent (CFG_REQUEST, CFG_REPLY), and each
    # as a chain of one CP payload (generic header, next payload NONE).
    cps = [b for _, first, c in chains for k, b in chain(first, c) if k == 47]
    write("cp_decode", cps + [bytes([0, 0]) + (len(b) + 4).to_bytes(2, "big") + b for b in cps])
    # mediation_decode: the mediation scenario's chains behind their first type, and
    # every ME_ENDPOINT notify's data (notify type 40962).
    med = [bytes([first]) + c for s, first, c in chains if s == "mediation"]
    endpoints = [
        b[4 + b[1]:]
        for _, first, c in chains
        for k, b in chain(first, c)
        if k == 41 and len(b) >= 4 and int.from_bytes(b[2:4], "big") == 40962
    ]
    write("mediation_decode", med + endpoints)
    # relay_decode: esprit's private relay notifies, which no charon capture holds: an
    # ESPRIT_RELAY_READY body, a bind datagram bare and behind the non-ESP marker, and
    # notify chains (first byte 41, N) as a peer and a server exchange them.
    token = bytes(range(1, 17))
    cid = bytes.fromhex("deadbeef")
    ready = (4500).to_bytes(2, "big") + token + cid
    bind = b"esprRLY1" + token
    relay = [
        ready,
        bind,
        bytes(4) + bind,
        relay_chain([(53249, cid)]),
        relay_chain([(53249, bytes(range(16)))]),
        relay_chain([(53250, ready)]),
        relay_chain([(53250, bytes(2) + token + cid)]),
        relay_chain([(53248, b""), (16128, b"")]),
    ]
    write("relay_decode", relay)
    # control_request: one request line of each command, as `esprit` sends them.
    text_seeds("control_request", [
        '{"cmd":"status"}\n',
        '{"cmd":"initiate","conn":"site-b","child":null}\n',
        '{"cmd":"initiate","conn":"site-b","child":"net"}\n',
        '{"cmd":"terminate","conn":"site-b"}\n',
        '{"cmd":"reload"}\n',
        '{"cmd":"rekey","conn":"site-b","child":"net","ike":false}\n',
        '{"cmd":"rekey","conn":"site-b","ike":true}\n',
    ])
    # config_parse: the README's configuration files (the ```toml blocks).
    with open(os.path.join(HERE, "..", "README.md")) as f:
        readme = f.read()
    text_seeds("config_parse", re.findall(r"```toml\n(.*?)```", readme, re.S))


if __name__ == "__main__":
    main()
