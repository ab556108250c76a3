#!/usr/bin/env python3
"""Turn one charon <-> charon capture into golden test data files.

Inputs: the pcap taken on the initiator's veth and both charon filelogs
(written with ike = 4, chd = 4, enc = 3, cfg = 2, net = 2).
Outputs (into --out):
  NN-<exchange>-<req|resp>[-fragK].hex   IKE message (non-ESP marker stripped)
  NN-esp-<i2r|r2i>.hex                   ESP-in-UDP packets (UDP payload)
  NN-...plain.hex                        decrypted SK payload body as logged
                                         by the initiator ("plain =>")
  messages.txt                           manifest, one line per packet
  keys.txt                               "name = hex" lines (see README.md)
  charon-initiator.log, charon-responder.log   trimmed log excerpts

Only the Python standard library is used.
"""

import argparse
import os
import re
import struct
import sys

EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA",
             37: "INFORMATIONAL"}
PT_KE, PT_NONCE, PT_SK, PT_SKF = 34, 40, 46, 53

# ---------------------------------------------------------------- pcap ----


def read_pcap(path):
    """Yield (src, sport, dst, dport, udp_payload) for IPv4/UDP packets."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        end = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        end = ">"
    else:
        sys.exit("%s: not a classic pcap file (use tshark -F pcap)" % path)
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            if struct.unpack("!H", frame[12:14])[0] != 0x0800:
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked (SLL)
            ip = frame[16:]
        elif linktype == 101:  # raw IP
            ip = frame
        else:
            sys.exit("unsupported pcap link type %d" % linktype)
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        yield src, sport, dst, dport, udp[8:ulen]


def ike_header(msg):
    spi_i, spi_r, np, ver, exch, flags, mid, length = struct.unpack(
        "!8s8sBBBBII", msg[:28])
    return dict(spi_i=spi_i, spi_r=spi_r, np=np, ver=ver, exch=exch,
                flags=flags, mid=mid, length=length)


def ike_payloads(msg):
    """Yield (type, body) for the unencrypted payload chain."""
    hdr = ike_header(msg)
    np, off = hdr["np"], 28
    while np and off + 4 <= len(msg):
        nxt, _, plen = struct.unpack("!BBH", msg[off:off + 4])
        yield np, msg[off + 4:off + plen]
        if np in (PT_SK, PT_SKF):
            return
        np, off = nxt, off + plen


# ----------------------------------------------------------- charon log ----

LINE = re.compile(r"^(?P<time>\S+) (?P<thr>\d+)\[(?P<sub>\w+)\] "
                  r"(?:<(?P<sa>[^>]*)> )?(?P<msg>.*)$")
DUMP = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} ){0,15}[0-9A-F]{2})")
LABEL = re.compile(r"^(?P<label>.*?) => (?P<n>\d+) bytes @ 0x[0-9a-f]+$")


class Record:
    """One log statement: its first line plus following hexdump lines."""

    def __init__(self, m, raw):
        self.thr, self.sub, self.sa = m["thr"], m["sub"], m["sa"]
        self.msg, self.lines, self.dump = m["msg"], [raw], bytearray()

    @property
    def label(self):
        m = LABEL.match(self.msg)
        return (m["label"], int(m["n"])) if m else (None, None)


def read_log(path):
    records, open_by_thread = [], {}
    with open(path, errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            m = LINE.match(raw)
            if not m:
                if records:
                    records[-1].lines.append(raw)
                continue
            d = DUMP.match(m["msg"])
            rec = open_by_thread.get(m["thr"])
            if d and rec is not None:
                rec.lines.append(raw)
                rec.dump += bytes.fromhex(d.group(1).replace(" ", ""))
                continue
            rec = Record(m, raw)
            records.append(rec)
            open_by_thread[m["thr"]] = rec
    for r in records:
        label, n = r.label
        if label is not None and n != len(r.dump):
            sys.exit("%s: dump of '%s' has %d bytes, expected %d"
                     % (path, label, len(r.dump), n))
    return records


NOISE = re.compile(
    r"^(\s+(generating|parsing) rule |generating payload of type |"
    r"generating \S+ payload finished|starting parsing a |"
    r"parsing \S+ payload, \d+ bytes left|parsing \S+ payload finished|"
    r"verifying payload of type |\S+ payload verified, adding|"
    r"process payload of type |found payload of type |"
    r"added payload of type |insert (decrypted )?payload |order payloads|"
    r"parsing header of message|parsing body of message|"
    r"verifying message structure|not encrypting payloads|"
    r"waiting for data on sockets|\s+=> |generated data (for this payload|"
    r"of this generator) =>|parsing payload from =>|"
    r"\s+\d+ bytes left, parsing recursively )")


def trim_log(records, path):
    """Write the log from the first IKE_SA line on, without ENC parser noise."""
    start = next((i for i, r in enumerate(records) if r.sa is not None), 0)
    head = [r for r in records[:start] if "Starting IKE charon" in r.msg
            or "loaded plugins" in r.msg]
    with open(path, "w") as f:
        for r in head + records[start:]:
            if r.sub == "ENC" and NOISE.match(r.msg):
                continue
            f.write("\n".join(r.lines) + "\n")


def exchange_summaries(records):
    """Map (exchange, 'request'/'response', mid) -> list of payload lists,
    and return the initiator's plain dumps keyed the same way."""
    summ, plains = {}, {}
    gen_ctx, pending = {}, {}
    pat = re.compile(r"^(generating|parsed) (\w+) (request|response) (\d+) "
                     r"(\[.*\])$")
    for r in records:
        m = pat.match(r.msg)
        if m:
            key = (m[2], m[3], int(m[4]))
            summ.setdefault(key, []).append((m[1], m[5]))
            idx = len(summ[key]) - 1
            if m[1] == "generating":
                gen_ctx[r.thr] = (key, idx)
            elif r.thr in pending:
                plains[(key, idx)] = pending.pop(r.thr)
            continue
        label, _ = r.label
        if r.sub == "ENC" and label == "plain":
            if r.thr in gen_ctx:
                plains[gen_ctx.pop(r.thr)] = bytes(r.dump)
            else:
                pending[r.thr] = bytes(r.dump)
        if r.sub == "NET" and r.msg.startswith("sending packet"):
            gen_ctx.pop(r.thr, None)
    return summ, plains


KEY_LABELS = {
    "shared Diffie Hellman secret": "shared_secret",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d",
    "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei", "Sk_er secret": "sk_er",
    "Sk_pi secret": "sk_pi", "Sk_pr secret": "sk_pr",
    "seed": "child_seed",
    "encryption initiator key": "esp_sk_ei",
    "encryption responder key": "esp_sk_er",
    "integrity initiator key": "esp_sk_ai",
    "integrity responder key": "esp_sk_ar",
}
# logged once when building our own AUTH and once when verifying the peer's
AUTH_LABELS = {
    "IDx'": "id%s_prime",
    "octets = message + nonce + prf(Sk_px, IDx')": "auth_octets_%s",
    "secret": "psk",
    "prf(secret, keypad)": "psk_prf_keypad",
    "AUTH = prf(prf(secret, keypad), octets)": "auth_%s",
}


def log_keys(records, role):
    """Collect the secrets the log dumped. role 'i' or 'r' = whose log."""
    keys, info, seen = {}, {}, {}
    for r in records:
        m = re.match(r"selected proposal: (IKE|ESP):(\S+)", r.msg)
        if m:
            info["%s_proposal" % m[1].lower()] = m[2]
        m = re.search(r"CHILD_SA \S+ established with SPIs (\w+)_i (\w+)_o",
                      r.msg)
        if m:
            mine, peer = m[1], m[2]
            keys["esp_spi_" + role] = mine
            keys["esp_spi_" + ("r" if role == "i" else "i")] = peer
        label, _ = r.label
        if label is None:
            continue
        if label in KEY_LABELS:
            keys.setdefault(KEY_LABELS[label], bytes(r.dump).hex())
        elif label in AUTH_LABELS:
            n = seen.get(label, 0)
            seen[label] = n + 1
            who = role if n == 0 else ("r" if role == "i" else "i")
            name = AUTH_LABELS[label]
            if "%s" in name:
                name = name % who
            elif n:
                continue
            keys.setdefault(name, bytes(r.dump).hex())
    return keys, info


# ------------------------------------------------------------------ main ----


def wrap(b, width=32):
    h = b.hex()
    return "\n".join(h[i:i + 2 * width] for i in range(0, len(h), 2 * width))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--init-log", required=True)
    ap.add_argument("--resp-log", required=True)
    ap.add_argument("--initiator", required=True, help="initiator IP")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args()

    ilog, rlog = read_log(a.init_log), read_log(a.resp_log)
    summ, plains = exchange_summaries(ilog)
    rsumm, _ = exchange_summaries(rlog)
    for k, v in rsumm.items():
        summ.setdefault(k, [])
        if not summ[k]:
            summ[k] = v

    for f in os.listdir(a.out):
        if re.match(r"^\d\d-.*\.hex$", f):
            os.remove(os.path.join(a.out, f))

    manifest, used = [], {}
    sa_init = {}
    seq = 0
    for src, sport, dst, dport, payload in read_pcap(a.pcap):
        seq += 1
        way = "i2r" if src == a.initiator else "r2i"
        where = "%s:%d -> %s:%d" % (src, sport, dst, dport)
        marker = False
        if 4500 in (sport, dport):
            if payload == b"\xff":
                manifest.append("%02d  -  %s  %s  NAT-keepalive" % (seq, way, where))
                continue
            if payload[:4] != b"\0\0\0\0":
                name = "%02d-esp-%s.hex" % (seq, way)
                spi, esn = struct.unpack("!II", payload[:8])
                with open(os.path.join(a.out, name), "w") as f:
                    f.write(wrap(payload) + "\n")
                manifest.append("%02d  %s  %s  %s  udp_payload=%d  ESP spi=%08x seq=%d"
                                % (seq, name, way, where, len(payload), spi, esn))
                continue
            payload, marker = payload[4:], True
        h = ike_header(payload)
        exch = EXCHANGES.get(h["exch"], str(h["exch"]))
        isresp = bool(h["flags"] & 0x20)
        kind = "response" if isresp else "request"
        key = (exch, kind, h["mid"])
        entries = summ.get(key, [])
        frag = ""
        if h["np"] == PT_SKF:
            body = next(ike_payloads(payload))[1]
            fnum, ftot = struct.unpack("!HH", body[:4])
            frag = "-frag%d" % fnum
            want = "[ EF(%d/%d) ]" % (fnum, ftot)
            cand = [i for i, e in enumerate(entries) if e[1] == want]
            whole = [e[1] for e in entries if not e[1].startswith("[ EF(")]
            text = want
            if fnum == 1 and whole:
                text += "  reassembled=" + whole[0]
        else:
            cand = [i for i, e in enumerate(entries)
                    if not e[1].startswith("[ EF(")]
            text = None
        n = used.get(key + (frag,), 0)
        used[key + (frag,)] = n + 1
        idx = cand[n] if n < len(cand) else None
        if text is None:
            text = entries[idx][1] if idx is not None else "?"
        name = "%02d-%s-%s%s" % (seq, exch.lower(), "resp" if isresp else "req", frag)
        with open(os.path.join(a.out, name + ".hex"), "w") as f:
            f.write(wrap(payload) + "\n")
        flags = "".join(c for b, c in ((0x08, "I"), (0x20, "R"), (0x10, "V"))
                        if h["flags"] & b)
        line = ("%02d  %s.hex  %s  %s  non_esp_marker=%s  len=%d  %s %s mid=%d "
                "flags=%s  %s" % (seq, name, way, where, "yes" if marker else "no",
                                  len(payload), exch, kind, h["mid"], flags, text))
        plain = plains.get((key, idx))
        if plain is not None:
            pname = name + ".plain.hex"
            with open(os.path.join(a.out, pname), "w") as f:
                f.write(wrap(plain) + "\n")
            line += "  plain=" + pname
        manifest.append(line)
        if exch == "IKE_SA_INIT":
            sa_init[kind] = payload

    keys, info = log_keys(ilog, "i")
    rkeys, rinfo = log_keys(rlog, "r")
    # the responder derived the same IKE/CHILD keys: cross-check here
    for k in ("shared_secret", "skeyseed", "sk_d", "sk_ai", "sk_ar", "sk_ei",
              "sk_er", "sk_pi", "sk_pr", "esp_sk_ei", "esp_sk_er",
              "esp_sk_ai", "esp_sk_ar", "esp_spi_i", "esp_spi_r"):
        if k in keys and rkeys.get(k) != keys[k]:
            sys.exit("initiator and responder disagree on %s" % k)

    # SPIs, nonces and public values from the last IKE_SA_INIT exchange
    req, resp = sa_init["request"], sa_init["response"]
    hdr = ike_header(resp)
    wire = {"spi_i": hdr["spi_i"].hex(), "spi_r": hdr["spi_r"].hex()}
    for kind, msg in (("i", req), ("r", resp)):
        for pt, body in ike_payloads(msg):
            if pt == PT_NONCE:
                wire["n" + kind] = body.hex()
            elif pt == PT_KE:
                wire["ke_group"] = str(struct.unpack("!H", body[:2])[0])
                wire["ke_" + kind] = body[4:].hex()
    if "child_seed" in keys and keys["child_seed"] != wire["ni"] + wire["nr"]:
        sys.exit("child seed from log is not Ni | Nr from the wire")

    order = ["spi_i", "spi_r", "ni", "nr", "ke_i", "ke_r", "shared_secret",
             "skeyseed", "sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi",
             "sk_pr", "idi_prime", "auth_octets_i", "idr_prime",
             "auth_octets_r", "psk", "psk_prf_keypad", "auth_i", "auth_r",
             "esp_spi_i", "esp_spi_r", "esp_sk_ei", "esp_sk_ai", "esp_sk_er",
             "esp_sk_ar"]
    allk = dict(keys)
    allk.update(wire)
    with open(os.path.join(a.out, "keys.txt"), "w") as f:
        f.write("# %s\n" % a.title if a.title else "")
        f.write("# from the initiator's charon log (ike = 4, chd = 4) and the "
                "IKE_SA_INIT messages on the wire\n")
        f.write("# ike proposal: %s\n" % info.get("ike_proposal", "?"))
        f.write("# esp proposal: %s\n" % info.get("esp_proposal", "?"))
        f.write("# ke_group = %s (IANA transform type 4 id)\n" % wire.get("ke_group"))
        for k in order:
            if k in allk:
                f.write("%s = %s\n" % (k, allk[k]))
    with open(os.path.join(a.out, "messages.txt"), "w") as f:
        f.write("# %s\n" % a.title if a.title else "")
        f.write("# seq  file  direction  src:port -> dst:port  non_esp_marker"
                "  len  exchange kind mid flags  payloads (charon)  [plain]\n")
        f.write("\n".join(manifest) + "\n")
    trim_log(ilog, os.path.join(a.out, "charon-initiator.log"))
    trim_log(rlog, os.path.join(a.out, "charon-responder.log"))


if __name__ == "__main__":
    main()
