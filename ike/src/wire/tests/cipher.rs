//! A toy SK cipher for tests: XOR with a keyed xorshift keystream and a keyed FNV-1a
//! checksum as ICV. Not secure; any single-byte change to AAD, IV, ciphertext or ICV
//! fails `open`, which is what the framing tests need.

use crate::wire::SkCipher;

pub(super) struct ToyCipher {
    key: u64,
    iv_len: usize,
    icv_len: usize,
    block_len: usize,
    counter: u64,
}

impl ToyCipher {
    /// Shaped like AES-GCM-16 in IKE (RFC 5282): 8-byte IV, 16-byte ICV, no blocks.
    pub(super) fn gcm(key: u64) -> Self {
        ToyCipher {
            key,
            iv_len: 8,
            icv_len: 16,
            block_len: 1,
            counter: 1,
        }
    }

    /// Shaped like AES-CBC with HMAC-SHA2-256-128: 16-byte IV and blocks, 16-byte ICV.
    pub(super) fn cbc(key: u64) -> Self {
        ToyCipher {
            key,
            iv_len: 16,
            icv_len: 16,
            block_len: 16,
            counter: 1,
        }
    }

    fn mac(&self, aad: &[u8], iv: &[u8], ct: &[u8], icv: &mut [u8]) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.key;
        for &b in aad.iter().chain(iv).chain(ct) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for (i, out) in icv.iter_mut().enumerate() {
            if i % 8 == 0 {
                h = (h ^ i as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
            *out = (h >> (8 * (i % 8))) as u8;
        }
    }

    fn xor(&self, iv: &[u8], body: &mut [u8]) {
        let mut s = self.key ^ 0x9e37_79b9_7f4a_7c15;
        for &b in iv {
            s = (s ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in body {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b ^= s as u8;
        }
    }
}

impl SkCipher for ToyCipher {
    fn iv_len(&self) -> usize {
        self.iv_len
    }

    fn icv_len(&self) -> usize {
        self.icv_len
    }

    fn block_len(&self) -> usize {
        self.block_len
    }

    fn next_iv(&mut self, iv: &mut [u8]) {
        for (i, b) in iv.iter_mut().enumerate() {
            *b = (self.counter >> (8 * (i % 8))) as u8;
        }
        self.counter += 1;
    }

    fn seal(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &mut [u8]) {
        assert_eq!(body.len() % self.block_len, 0, "unaligned plaintext");
        self.xor(iv, body);
        self.mac(aad, iv, body, icv);
    }

    fn open(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &[u8]) -> bool {
        let mut expected = vec![0; self.icv_len];
        self.mac(aad, iv, body, &mut expected);
        if expected != icv {
            return false;
        }
        self.xor(iv, body);
        true
    }
}
