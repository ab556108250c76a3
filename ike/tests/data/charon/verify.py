#!/usr/bin/env python3
"""Check that the charon golden captures are self-consistent.

    python3 ike/tests/data/charon/verify.py [CAPTURE_DIR...]

Stdlib-only checks (always run):
  * SKEYSEED = prf(Ni | Nr, g^ir)
  * prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) = SK_d | SK_ai | SK_ar | SK_ei |
    SK_er | SK_pi | SK_pr                                (RFC 7296 2.14)
  * prf+(SK_d, Ni | Nr) = ESP encr_i | integ_i | encr_r | integ_r  (2.17)
  * the logged AUTH octets = first message on the wire | peer nonce |
    prf(SK_px, IDx')  (2.15), and IDx' is the ID payload in the plaintext
  * PSK: AUTH = prf(prf(PSK, "Key Pad for IKEv2"), octets), equal to the
    AUTH payload in the logged plaintext
  * HMAC integrity checksums of the SK payloads and ESP packets (CBC case)
  * NATD_DESTINATION_IP = SHA1(SPIi | SPIr | peer IP | 500); NATD_SOURCE_IP
    does NOT match (charon with kernel-libipsec fakes it to force UDP encap)
If the `cryptography` package happens to be installed, also:
  * decrypt every SK / SKF payload and ESP packet and compare with the
    logged plaintext / the ICMP echo the capture script sent
  * verify ECDSA / RSA AUTH signatures against the committed certificates
"""

import hashlib
import hmac
import os
import re
import struct
import sys

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography import x509
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover
    HAVE_CRYPTO = False

HERE = os.path.dirname(os.path.abspath(__file__))
ICMP_PAYLOAD = b"esprit golden ESP test payload!!"
PT_SK, PT_SKF, PT_IDI, PT_IDR, PT_AUTH = 46, 53, 35, 36, 39


class Capture:
    def __init__(self, path):
        self.path, self.name = path, os.path.basename(path)
        self.keys, self.comments = {}, {}
        for line in open(os.path.join(path, "keys.txt")):
            line = line.strip()
            m = re.match(r"^# (ike|esp) proposal: (\S+)", line)
            if m:
                self.comments[m[1]] = m[2]
            if not line or line.startswith("#"):
                continue
            k, v = (x.strip() for x in line.split("=", 1))
            self.keys[k] = bytes.fromhex(v)
        self.msgs = []  # (file stem, direction, bytes, plain or None)
        for line in open(os.path.join(path, "messages.txt")):
            if not line[:1].isdigit():
                continue
            f = line.split()
            if f[1] == "-":
                continue
            data = self.hexfile(f[1])
            m = re.search(r"plain=(\S+)", line)
            plain = self.hexfile(m[1]) if m else None
            self.msgs.append((f[1], f[2], data, plain))

    def hexfile(self, name):
        with open(os.path.join(self.path, name)) as f:
            return bytes.fromhex("".join(f.read().split()))


def prf_hash(proposal):
    for name, h in (("PRF_HMAC_SHA2_256", hashlib.sha256),
                    ("PRF_HMAC_SHA2_384", hashlib.sha384),
                    ("PRF_HMAC_SHA2_512", hashlib.sha512)):
        if name in proposal:
            return h
    raise ValueError("unknown PRF in " + proposal)


def prfplus(prf, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


def payloads(chain, first):
    """Yield (type, body) of a plain payload chain starting with `first`."""
    np, off = first, 0
    while np and off + 4 <= len(chain):
        nxt, _, ln = struct.unpack("!BBH", chain[off:off + 4])
        yield np, chain[off + 4:off + ln]
        np, off = nxt, off + ln


class Checker:
    def __init__(self, cap):
        self.cap, self.ok, self.fail, self.skipped = cap, 0, 0, []

    def check(self, what, got, want):
        if got == want:
            self.ok += 1
        else:
            self.fail += 1
            print("  FAIL %s:\n    got  %s\n    want %s" % (what, got.hex() if
                  isinstance(got, bytes) else got, want.hex() if
                  isinstance(want, bytes) else want))

    def skip(self, what):
        if what not in self.skipped:
            self.skipped.append(what)


def sk_parts(msg, iv_len, icv_len):
    """Split a message with an SK or SKF payload: (aad, iv, ct, icv, first
    inner payload type, frag number)."""
    np, off = msg[16], 28
    while np not in (PT_SK, PT_SKF):
        np, ln = msg[off], struct.unpack("!H", msg[off + 2:off + 4])[0]
        off += ln
    inner = msg[off]
    ln = struct.unpack("!H", msg[off + 2:off + 4])[0]
    hdr_end = off + 4 + (4 if np == PT_SKF else 0)
    frag = struct.unpack("!H", msg[off + 4:off + 6])[0] if np == PT_SKF else 0
    end = off + ln
    iv = msg[hdr_end:hdr_end + iv_len]
    return (msg[:hdr_end], iv, msg[hdr_end + iv_len:end - icv_len],
            msg[end - icv_len:end], inner, frag)


def decrypt(c, stem, gcm, key, iv, ct, icv, aad):
    """AES-GCM-16 (key = AES key | 4-byte salt) or AES-CBC; None on failure."""
    try:
        if gcm:
            return AESGCM(key[:-4]).decrypt(key[-4:] + iv, ct + icv, aad)
        d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        return d.update(ct) + d.finalize()
    except Exception as e:  # InvalidTag
        c.check(stem + " decryption", repr(e), "ok")
        return None


def verify(cap):
    c = Checker(cap)
    k = cap.keys
    h = prf_hash(cap.comments["ike"])

    def prf(key, data):
        return hmac.new(key, data, h).digest()

    # ---- IKE SA keys
    c.check("SKEYSEED = prf(Ni|Nr, g^ir)",
            prf(k["ni"] + k["nr"], k["shared_secret"]), k["skeyseed"])
    names = ["sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"]
    names = [n for n in names if n in k]
    stream = prfplus(prf, k["skeyseed"], k["ni"] + k["nr"] + k["spi_i"] +
                     k["spi_r"], sum(len(k[n]) for n in names))
    off = 0
    for n in names:
        c.check("prf+ -> " + n, stream[off:off + len(k[n])], k[n])
        off += len(k[n])

    # ---- CHILD SA keys
    names = [n for n in ("esp_sk_ei", "esp_sk_ai", "esp_sk_er", "esp_sk_ar")
             if n in k]
    stream = prfplus(prf, k["sk_d"], k["ni"] + k["nr"],
                     sum(len(k[n]) for n in names))
    off = 0
    for n in names:
        c.check("prf+(SK_d) -> " + n, stream[off:off + len(k[n])], k[n])
        off += len(k[n])

    # ---- NAT detection (RFC 7296 2.23): NATD_D_IP hashes the real peer
    # address; kernel-libipsec makes charon fake NATD_S_IP (forces UDP encap)
    for stem, way, data, _ in cap.msgs:
        if "ike_sa_init" not in stem:
            continue
        me, peer = ("192.0.2.1", "192.0.2.2") if way == "i2r" else \
            ("192.0.2.2", "192.0.2.1")
        for t, b in payloads(data[28:], data[16]):
            ntype = struct.unpack("!H", b[2:4])[0] if t == 41 else None
            if ntype not in (16388, 16389):
                continue
            ip = me if ntype == 16388 else peer
            want = hashlib.sha1(data[:16] + bytes(map(int, ip.split("."))) +
                                struct.pack("!H", 500)).digest()
            if ntype == 16389:
                c.check(stem + " NATD_D_IP", b[4:], want)
            else:
                c.check(stem + " NATD_S_IP is faked", b[4:] != want, True)

    # ---- AUTH octets (RFC 7296 2.15) against the wire
    init_req = [m for m in cap.msgs if "ike_sa_init-req" in m[0]][-1][2]
    init_resp = [m for m in cap.msgs if "ike_sa_init-resp" in m[0]][-1][2]
    c.check("auth_octets_i", k["auth_octets_i"], init_req + k["nr"] +
            prf(k["sk_pi"], k["idi_prime"]))
    c.check("auth_octets_r", k["auth_octets_r"], init_resp + k["ni"] +
            prf(k["sk_pr"], k["idr_prime"]))
    if "psk" in k:
        keypad = prf(k["psk"], b"Key Pad for IKEv2")
        c.check("prf(PSK, keypad)", keypad, k["psk_prf_keypad"])
        c.check("AUTH_i (PSK)", prf(keypad, k["auth_octets_i"]), k["auth_i"])
        c.check("AUTH_r (PSK)", prf(keypad, k["auth_octets_r"]), k["auth_r"])

    # ---- the logged plaintext of IKE_AUTH carries IDx' and AUTH
    for who, idt in (("i", PT_IDI), ("r", PT_IDR)):
        kind = "req" if who == "i" else "resp"
        parts = [m for m in cap.msgs if m[0].startswith(tuple(
            "%02d-ike_auth-%s" % (i, kind) for i in range(100)))]
        inner_first, chain = None, b""
        for stem, _, data, plain in parts:
            _, _, _, _, first, frag = sk_parts(data, 0, 0)
            if frag <= 1:
                inner_first = first
            chain += plain
        pl = dict((t, b) for t, b in payloads(chain, inner_first))
        c.check("ID%s payload = ID%s'" % (who, who), pl.get(idt), k["id%s_prime" % who])
        auth = pl[PT_AUTH]
        if auth[0] == 2:
            c.check("AUTH%s payload (PSK)" % who, auth[4:], k["auth_" + who])
        elif HAVE_CRYPTO:
            verify_sig(c, cap, who, auth, k["auth_octets_" + who])
        else:
            c.skip("signature check (no cryptography module)")

    # ---- SK payloads: integrity (HMAC, stdlib) and decryption (optional)
    ike = cap.comments["ike"]
    gcm = "AES_GCM_16" in ike
    iv_len, icv_len = (8, 16) if gcm else (16, 16)
    for stem, way, data, plain in cap.msgs:
        if "-esp-" in stem or "ike_sa_init" in stem:
            continue
        from_i = data[19] & 0x08 != 0
        ek = k["sk_ei"] if from_i else k["sk_er"]
        aad, iv, ct, icv, _, _ = sk_parts(data, iv_len, icv_len)
        if not gcm:
            ak = k["sk_ai"] if from_i else k["sk_ar"]
            c.check(stem + " ICV (HMAC-SHA256-128)",
                    hmac.new(ak, data[:-icv_len], hashlib.sha256).digest()[:16], icv)
        if not HAVE_CRYPTO:
            c.skip("SK decryption (no cryptography module)")
            continue
        dec = decrypt(c, stem, gcm, ek, iv, ct, icv, aad)
        if dec is None:
            continue
        dec = dec[:len(dec) - dec[-1] - 1]
        c.check(stem + " decrypted = logged plain", dec, plain)

    # ---- ESP packets
    esp = cap.comments["esp"]
    egcm = "AES_GCM_16" in esp
    for stem, way, data, _ in cap.msgs:
        if "-esp-" not in stem:
            continue
        i2r = way == "i2r"
        c.check(stem + " SPI", data[:4], k["esp_spi_r"] if i2r else k["esp_spi_i"])
        ek = k["esp_sk_ei"] if i2r else k["esp_sk_er"]
        if egcm:
            iv, ct, icv = data[8:16], data[16:-16], data[-16:]
        else:
            ak = k["esp_sk_ai"] if i2r else k["esp_sk_ar"]
            iv, ct, icv = data[8:24], data[24:-16], data[-16:]
            c.check(stem + " ICV (HMAC-SHA256-128)",
                    hmac.new(ak, data[:-16], hashlib.sha256).digest()[:16], icv)
        if not HAVE_CRYPTO:
            c.skip("ESP decryption (no cryptography module)")
            continue
        dec = decrypt(c, stem, egcm, ek, iv, ct, icv, data[:8])
        if dec is None:
            continue
        nh, padlen = dec[-1], dec[-2]
        ip = dec[:len(dec) - padlen - 2]
        c.check(stem + " next header", nh, 4)
        c.check(stem + " pad bytes 1,2,3..", dec[len(ip):len(ip) + padlen],
                bytes(range(1, padlen + 1)))
        src, dst = ip[12:16], ip[16:20]
        want = (bytes([10, 96, 1, 1]), bytes([10, 96, 2, 1])) if i2r else \
            (bytes([10, 96, 2, 1]), bytes([10, 96, 1, 1]))
        c.check(stem + " inner addresses", (src, dst), want)
        ihl = (ip[0] & 15) * 4
        c.check(stem + " inner ICMP type", ip[ihl], 8 if i2r else 0)
        c.check(stem + " inner ICMP payload", ip[ihl + 8:], ICMP_PAYLOAD)
    return c


SIG_OIDS = {  # DER of the OID in the RFC 7427 AlgorithmIdentifier
    bytes.fromhex("2a8648ce3d040302"): ("ecdsa", "sha256"),
    bytes.fromhex("2a8648ce3d040303"): ("ecdsa", "sha384"),
    bytes.fromhex("2a8648ce3d040304"): ("ecdsa", "sha512"),
    bytes.fromhex("2a864886f70d01010b"): ("rsa", "sha256"),
    bytes.fromhex("2a864886f70d01010c"): ("rsa", "sha384"),
    bytes.fromhex("2a864886f70d01010d"): ("rsa", "sha512"),
    bytes.fromhex("2a864886f70d01010a"): ("rsa-pss", None),
}


def verify_sig(c, cap, who, auth, octets):
    cert = x509.load_pem_x509_certificate(open(os.path.join(
        cap.path, "edge1.crt" if who == "i" else "edge2.crt"), "rb").read())
    pub = cert.public_key()
    if auth[0] != 14:
        c.check("AUTH%s method is 14 (RFC 7427)" % who, auth[0], 14)
        return
    alen = auth[4]
    algid, sig = auth[5:5 + alen], auth[5 + alen:]
    kind = next((v for o, v in SIG_OIDS.items() if o in algid), None)
    if kind is None or kind[0] == "rsa-pss":
        c.skip("signature scheme %s" % algid.hex())
        return
    hsh = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
           "sha512": hashes.SHA512()}[kind[1]]
    try:
        if kind[0] == "ecdsa":
            pub.verify(sig, octets, ec.ECDSA(hsh))
        else:
            pub.verify(sig, octets, padding.PKCS1v15(), hsh)
        res = "valid"
    except Exception as e:  # InvalidSignature
        res = "invalid: %r" % e
    c.check("AUTH%s signature (%s-%s)" % (who, kind[0], kind[1]), res, "valid")


def main():
    dirs = sys.argv[1:] or sorted(
        os.path.join(HERE, d) for d in os.listdir(HERE)
        if os.path.isfile(os.path.join(HERE, d, "keys.txt")))
    bad = 0
    for d in dirs:
        c = verify(Capture(d))
        print("%-18s %3d checks ok, %d failed%s" % (
            c.cap.name, c.ok, c.fail,
            "; skipped: " + ", ".join(c.skipped) if c.skipped else ""))
        bad += c.fail
    if not HAVE_CRYPTO:
        print("(python 'cryptography' not installed: decryption and signature "
              "checks skipped)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
