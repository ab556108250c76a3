#!/usr/bin/env python3
"""Extract charon's connectivity checks and connect keys from the logs of a mediated
setup run with charon in all three roles (see README.md here).

    extract.py LOGDIR OUTDIR

LOGDIR holds server.log, a.log and b.log written with ESPRIT_MEDIATION_CAPTURE and
ESPRIT_CHARON_LOG_LEVELS="default = 1;ike = 4;net = 3;enc = 1;cfg = 1;chd = 1".
Writes NN-<a|b>-from-<a|b>-check-<req|resp>.hex (the UDP payload without the non-ESP
marker) and keys.txt (connect ID and each peer's connect key, from the server's log)."""
import re
import sys
from pathlib import Path

HEXLINE = re.compile(r"\[NET\]\s+\d+: ((?:[0-9A-F]{2} ?)+)")


def packets(log):
    """(bytes) of every 'received packet =>' dump, in order."""
    out, cur = [], None
    for line in log.splitlines():
        if "received packet =>" in line:
            cur = bytearray()
            out.append(cur)
            continue
        m = HEXLINE.search(line)
        if cur is not None and m:
            cur.extend(bytes.fromhex(m.group(1).replace(" ", "")[:32]))
            continue
        cur = None
    return [bytes(p) for p in out]


def main():
    logs, out = Path(sys.argv[1]), Path(sys.argv[2])
    n = 0
    for me, other in (("a", "b"), ("b", "a")):
        seen = set()
        for p in packets((logs / f"{me}.log").read_text(errors="replace")):
            # On 4500: non-ESP marker, then an IKE header with both SPIs zero and
            # INFORMATIONAL (37).
            if len(p) < 32 or p[:4] != b"\0\0\0\0" or p[4:20] != bytes(16) or p[22] != 37:
                continue
            msg = p[4:]
            if msg in seen:
                continue  # a retransmission
            seen.add(msg)
            n += 1
            kind = "resp" if msg[19] & 0x20 else "req"
            name = f"{n:02d}-{me}-from-{other}-check-{kind}.hex"
            (out / name).write_text(msg.hex() + "\n")
    server = (logs / "server.log").read_text(errors="replace")
    keys = re.findall(r"<medsrv\|(\d+)> received ME_CONNECTKEY ([0-9a-f:]+)", server)
    cids = re.findall(r"received ME_CONNECTID ([0-9a-f:]+)", server)
    ids = {}
    for sa, ident in re.findall(r"IKE_SA medsrv\[(\d+)\] established between .*\.\.\.[^\[]+\[[^\]]*CN=(edge\d)\]", server):
        ids[sa] = {"edge1": "a", "edge2": "b"}[ident]
    with open(out / "keys.txt", "w") as f:
        f.write(f"connect_id {cids[0].replace(':', '')}\n")
        for sa, key in keys:
            f.write(f"key_{ids[sa]} {key.replace(':', '')}\n")


main()
