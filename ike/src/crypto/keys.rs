//! Key derivation for IKE and Child SAs (RFC 7296 2.13, 2.14, 2.17, 2.18).
//!
//! Every function here is pure: nonces, SPIs and shared secrets in, keys out, so the
//! results can be compared with the keys another implementation logs.

use zeroize::Zeroizing;

use super::suite::{EspSuite, IkeSuite};
use super::{prf_plus, CryptoError, IkeCipher, Prf, SecretBytes};

/// SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA (RFC 7296 2.14). For AES-XCBC-PRF-128
/// only the first 64 bits of each nonce form the key.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> SecretBytes {
    let key = match prf {
        Prf::Aes128Xcbc => [&ni[..ni.len().min(8)], &nr[..nr.len().min(8)]].concat(),
        _ => [ni, nr].concat(),
    };
    prf.compute(&key, g_ir)
}

/// SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) for a rekeyed IKE SA (RFC 7296
/// 2.18). `old_prf` is the PRF of the IKE SA being rekeyed: the RFC says the exchange
/// belongs to the old SA, so its PRF computes SKEYSEED; the new SA's PRF then runs
/// prf+ in [`IkeKeys::derive`].
pub fn skeyseed_rekey(
    old_prf: Prf,
    sk_d_old: &[u8],
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> SecretBytes {
    old_prf.compute_parts(sk_d_old, &[g_ir, ni, nr])
}

/// The seven secrets of an IKE SA (RFC 7296 2.14). With an AEAD cipher SK_ai and SK_ar
/// are empty and SK_ei/SK_er carry the salt after the key.
#[derive(Debug, Clone)]
pub struct IkeKeys {
    /// Derives Child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: SecretBytes,
    /// Integrity key for messages from the original initiator.
    pub sk_ai: SecretBytes,
    /// Integrity key for messages from the original responder.
    pub sk_ar: SecretBytes,
    /// Encryption key for messages from the original initiator.
    pub sk_ei: SecretBytes,
    /// Encryption key for messages from the original responder.
    pub sk_er: SecretBytes,
    /// Key for the initiator's AUTH payload (RFC 7296 2.15).
    pub sk_pi: SecretBytes,
    /// Key for the responder's AUTH payload.
    pub sk_pr: SecretBytes,
}

impl IkeKeys {
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr |
    /// SPIi | SPIr), with lengths from `suite` (RFC 7296 2.14, 2.18).
    pub fn derive(
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let (p, a, e) = (
            suite.prf.key_len(),
            suite.integ.map_or(0, |i| i.key_len()),
            suite.encr.key_len(),
        );
        let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        let keymat = prf_plus(suite.prf, skeyseed, &seed, 3 * p + 2 * a + 2 * e)?;
        let mut rest = keymat.as_bytes();
        let mut take = |n: usize| {
            let (k, r) = rest.split_at(n);
            rest = r;
            SecretBytes::from_slice(k)
        };
        Ok(Self {
            sk_d: take(p),
            sk_ai: take(a),
            sk_ar: take(a),
            sk_ei: take(e),
            sk_er: take(e),
            sk_pi: take(p),
            sk_pr: take(p),
        })
    }

    /// SKEYSEED and the keys of a new IKE SA from its IKE_SA_INIT exchange.
    pub fn initial(
        suite: &IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let seed = skeyseed(suite.prf, ni, nr, g_ir);
        Self::derive(suite, seed.as_bytes(), ni, nr, spi_i, spi_r)
    }

    /// SKEYSEED and the keys of an IKE SA created by rekeying one with PRF `old_prf`
    /// and key `self.sk_d`; `spi_i`/`spi_r` are the new SA's SPIs (RFC 7296 2.18).
    #[allow(clippy::too_many_arguments)]
    pub fn rekeyed(
        &self,
        old_prf: Prf,
        suite: &IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let seed = skeyseed_rekey(old_prf, self.sk_d.as_bytes(), g_ir, ni, nr);
        Self::derive(suite, seed.as_bytes(), ni, nr, spi_i, spi_r)
    }

    /// The SK ciphers for our side: `(outbound, inbound)`. The original initiator
    /// sends with SK_ei/SK_ai and receives with SK_er/SK_ar (RFC 7296 2.14).
    pub fn ciphers(
        &self,
        suite: &IkeSuite,
        initiator: bool,
    ) -> Result<(IkeCipher, IkeCipher), CryptoError> {
        let i = IkeCipher::new(
            suite.encr,
            suite.integ,
            self.sk_ei.as_bytes(),
            self.sk_ai.as_bytes(),
        )?;
        let r = IkeCipher::new(
            suite.encr,
            suite.integ,
            self.sk_er.as_bytes(),
            self.sk_ar.as_bytes(),
        )?;
        Ok(if initiator { (i, r) } else { (r, i) })
    }
}

/// Keys of an ESP Child SA pair (RFC 7296 2.17): per direction, the encryption key (an
/// AES-GCM key is followed by its 4-byte salt, RFC 4106 8.1), then the integrity key
/// when the suite has one. "Initiator" is the initiator of the exchange that created
/// the Child SA, which after a rekey need not be the IKE SA's.
#[derive(Debug, Clone)]
pub struct ChildKeys {
    /// Keys for the SA carrying traffic from the initiator to the responder.
    pub encr_i: SecretBytes,
    /// Keys for the SA carrying traffic from the responder to the initiator.
    pub encr_r: SecretBytes,
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS
    /// (RFC 7296 2.17); the initiator-to-responder key is taken first.
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        suite: &EspSuite,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<Self, CryptoError> {
        // All keys of the initiator-to-responder SA first, encryption before integrity.
        let e = suite.encr.key_len() + suite.integ.map_or(0, super::Integ::key_len);
        let seed = Zeroizing::new([g_ir.unwrap_or_default(), ni, nr].concat());
        let keymat = prf_plus(prf, sk_d, &seed, 2 * e)?;
        let (i, r) = keymat.as_bytes().split_at(e);
        Ok(Self {
            encr_i: SecretBytes::from_slice(i),
            encr_r: SecretBytes::from_slice(r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, Dh, Encr, Integ};
    use crate::wire::SkCipher;

    // Expected values below were computed independently (Python's hmac and an AES-XCBC
    // written from RFC 3566/4434 over the `cryptography` package's AES) from:
    // Ni = 00..1f, Nr = 40..5f, g^ir = a5 * 32, SPIi = 0102030405060708,
    // SPIr = 1112131415161718.
    const SPI_I: u64 = 0x0102_0304_0506_0708;
    const SPI_R: u64 = 0x1112_1314_1516_1718;

    fn inputs() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        ((0..32).collect(), (0x40..0x60).collect(), vec![0xa5; 32])
    }

    struct Expected {
        suite: IkeSuite,
        skeyseed: &'static str,
        keymat: &'static str,
        child: &'static str,
        child_pfs: &'static str,
        rekey_seed: &'static str,
    }

    fn cases() -> [Expected; 4] {
        [
            Expected {
                suite: IkeSuite { encr: Encr::AesGcm16_128, integ: None, prf: Prf::HmacSha256, dh: Dh::Curve25519 },
                skeyseed: "c12c733bfa21d4659db27056376e010bb40582089f890992b293ca2c8bc64534",
                keymat: "df4a19d3e57fafd9fe7a19ece050a7ba0f59a6593089eec971fdbbeb18ebe378\
                         b571b72cc465d19ea1b0b59840256d8cd4ce390654e9f1ff7841caac9ec75479\
                         2c0eb842b72c2406664be695a2a3c42e3e9708546ae76ce2e4fcdd9baf44f5c1\
                         a987abea10a629de7ff0b98debde6bcfa9f96a840ad171d680333461d16ac88f\
                         c4e6a81585a2df6a",
                child: "125eccbcf9fd76d6c5a74688b62e0aff2b99524b49988867ddc470107abba59ba5f43a6092605748",
                child_pfs: "18976d75dd2cbd6517ba6b778b1e60feb2e5c249a65df00fdcbbde133bd0e2b7fbc78e661eb6c18e",
                rekey_seed: "5d79813b9b5e056e55db6182f90e283d1f4790b81817b4cd19556c414fe775a9",
            },
            Expected {
                suite: IkeSuite {
                    encr: Encr::AesCbc256,
                    integ: Some(Integ::HmacSha384_192),
                    prf: Prf::HmacSha384,
                    dh: Dh::Ecp256,
                },
                skeyseed: "ed12fd473afa28bdf54a782baff5dc9c95e7a05e076179f2622006d929c3d1c8\
                           90ad7d288825993555d032deadec3573",
                keymat: "49003123197d1d89fa48667c0dfc4d96ba1f669d710c5b3457542f2f1346979d\
                         8bc45f98d15ee8382a83a890262044dfe878474028c30a4eb615d091077edcda\
                         c5ece0e648ce8e97f96111fdecbc0de40d10c2d0e15d40469617473b6b927c43\
                         2a15cab53f62b2a09ea6ed0e33ced2eb575ff02cd798443101cbc6dcfb8ff5bb\
                         15e7d25ec079939576afa11f1ecf917bf5acf61e27ec55aa5b031ff0a9af7aea\
                         490bc3f7f410901829c1e45b836520556515af075358ab62d031041b11ed5e02\
                         458fff3b58e1ff468064d4f9fdf7ca85ed4d658e4f08c45b7438a074774a6a1d\
                         e291d7c2caf5b30f63ee00969536531f46c9708d60da6661f87be81b5d10512c\
                         ecaedae3b9358676067bc1f958dcd7ce11b82eeef3d82fdde921e1f494528bba\
                         ea39b419d0b2e58310dd83de650dd16c",
                child: "e470b25ce65f048bb0c18d6736c07faf77b7b63c99713fa9c24e1c7c18d9485fd98aff4fd1527aa2",
                child_pfs: "fa60f769545d9f1ac10b49d61555d4d532b057c22f963f317a74c7287fba441d7e1b415f732235dc",
                rekey_seed: "fdfa8515e2395658a384d7f3ff2912352a7c3e8cbce4ce57a98d59b8650a301b\
                             499da861b46394cd71eb1c9cd7b18e65",
            },
            Expected {
                suite: IkeSuite {
                    encr: Encr::AesCbc128,
                    integ: Some(Integ::AesXcbc96),
                    prf: Prf::Aes128Xcbc,
                    dh: Dh::Ecp256,
                },
                skeyseed: "33c78288b1e91fe071b859da3a4bdc21",
                keymat: "8d2a11c970baeda4f62ebf09da2f3180a8ae7cb9096ae1907698e221148c2fa1\
                         1885a6ddd435e7d49c91a03e5e25b473d40f2d7b894626aa2cf3c5e1e7934de2\
                         de89d251e656c1e09249b566ee89bbdfcfdb215140b2baea73f007c45d9a424f\
                         0c97dd8f42b39f068c0fdcd8d09ce071",
                child: "babc30473d4cb0489758232bf810a190f9b60fabb604f88cab56d928446c2db6f22a72a246454bc6",
                child_pfs: "bb92e48b677355f8335845693e0277dfe0296be3fb80b56ad65e23c1920ff5be4aabe1779475af81",
                rekey_seed: "f5a1425f40b13135e998eb4d00ceb1e3",
            },
            Expected {
                suite: IkeSuite { encr: Encr::AesGcm16_256, integ: None, prf: Prf::HmacSha512, dh: Dh::Curve25519 },
                skeyseed: "b5137f55ff64fc491b1576d4a9af580e233f29250931c0a45f3a35e3953f6b9b\
                           3952466827eeefaf92350915c49683a59b4d62c35c9947ca4a1de647d9c17d86",
                keymat: "8ad8c5598b6dab8593a7274bc975a17629ae226e316efb6b0f9c488965b8fe3a\
                         bb368e23493ab4e97b55362206df868b3492d1c42be4604a38ffd64b2b9aa910\
                         34c8d068186024ba8c4a6acb135f92ced50911ad710765080c6437f04c586c6c\
                         7890db58882452afff4b28b17fced23035dd0dc4356fe58eb876bca8f1467879\
                         1f38b1839ea6db964ed15bf289d6dec68d802dcfa47a5f68c1fcda3a9c2c83e3\
                         6509ba0610ec3d7f85b05807a25847f50c72d9cce6dc47b7e758a4c743f7aa7b\
                         2703a4b433088975e2f1cab2ccfe2f28d75609e9dcc4a6547876248eb8ea0186\
                         64efc358df716e32d9ddcd79b71930bb3fdb85f9c9d09187739acb210ffdefb1\
                         e71b14dfe1d69896",
                child: "5379a5748242eb4c6220c01796cc45e4dca77613c4cf1446f05dcfc08de81e05ff717004d69391e4",
                child_pfs: "87bebab3373757541224fd7c1866eba32986c620d978e0485401c8385b64cc6ba2521c2659a4e10e",
                rekey_seed: "53657ddce176699b9c24f48d352db4457a7cca4e82ea46a4146ca1b18a21f698\
                             835e714b09100795c98cd07fc6d2186fb17022b239876b4ca79bed0e99b00995",
            },
        ]
    }

    fn concat(k: &IkeKeys) -> Vec<u8> {
        [
            &k.sk_d, &k.sk_ai, &k.sk_ar, &k.sk_ei, &k.sk_er, &k.sk_pi, &k.sk_pr,
        ]
        .iter()
        .flat_map(|s| s.as_bytes().to_vec())
        .collect()
    }

    #[test]
    fn ike_keys_match_independent_derivation() {
        let (ni, nr, g_ir) = inputs();
        for e in cases() {
            let suite = e.suite;
            let seed = skeyseed(suite.prf, &ni, &nr, &g_ir);
            assert_eq!(seed.as_bytes(), hex(e.skeyseed), "{suite}");
            let keys = IkeKeys::initial(&suite, &g_ir, &ni, &nr, SPI_I, SPI_R).unwrap();
            assert_eq!(concat(&keys), hex(e.keymat), "{suite}");
            let (p, a, k) = (
                suite.prf.key_len(),
                suite.integ.map_or(0, |i| i.key_len()),
                suite.encr.key_len(),
            );
            for (key, len) in [
                (&keys.sk_d, p),
                (&keys.sk_ai, a),
                (&keys.sk_ar, a),
                (&keys.sk_ei, k),
            ] {
                assert_eq!(key.len(), len, "{suite}");
            }
            assert_eq!(
                (keys.sk_er.len(), keys.sk_pi.len(), keys.sk_pr.len()),
                (k, p, p)
            );

            let esp = EspSuite {
                encr: Encr::AesGcm16_128,
                integ: None,
                dh: None,
                esn: false,
            };
            let child =
                ChildKeys::derive(suite.prf, keys.sk_d.as_bytes(), &esp, None, &ni, &nr).unwrap();
            assert_eq!(
                [child.encr_i.as_bytes(), child.encr_r.as_bytes()].concat(),
                hex(e.child)
            );
            let pfs = EspSuite {
                dh: Some(Dh::Curve25519),
                ..esp
            };
            let child =
                ChildKeys::derive(suite.prf, keys.sk_d.as_bytes(), &pfs, Some(&g_ir), &ni, &nr)
                    .unwrap();
            assert_eq!(
                [child.encr_i.as_bytes(), child.encr_r.as_bytes()].concat(),
                hex(e.child_pfs)
            );
            assert_eq!(child.encr_i.len(), 20);

            let rekey = skeyseed_rekey(suite.prf, keys.sk_d.as_bytes(), &g_ir, &ni, &nr);
            assert_eq!(rekey.as_bytes(), hex(e.rekey_seed), "{suite}");
        }
    }

    #[test]
    fn rekey_uses_old_prf_for_skeyseed_and_new_prf_for_keys() {
        let (ni, nr, g_ir) = inputs();
        let [old, new, ..] = cases();
        let old_keys = IkeKeys::initial(&old.suite, &g_ir, &ni, &nr, SPI_I, SPI_R).unwrap();
        let rekeyed = old_keys
            .rekeyed(old.suite.prf, &new.suite, &g_ir, &ni, &nr, 7, 9)
            .unwrap();
        let seed = skeyseed_rekey(old.suite.prf, old_keys.sk_d.as_bytes(), &g_ir, &ni, &nr);
        assert_eq!(seed.len(), 32);
        let direct = IkeKeys::derive(&new.suite, seed.as_bytes(), &ni, &nr, 7, 9).unwrap();
        assert_eq!(concat(&rekeyed), concat(&direct));
        assert_eq!(rekeyed.sk_d.len(), 48);
    }

    #[test]
    fn xcbc_skeyseed_uses_64_bits_of_each_nonce() {
        let (ni, nr, g_ir) = inputs();
        let mut ni2 = ni.clone();
        ni2[8] ^= 1;
        let a = skeyseed(Prf::Aes128Xcbc, &ni, &nr, &g_ir);
        assert_eq!(
            a.as_bytes(),
            skeyseed(Prf::Aes128Xcbc, &ni2, &nr, &g_ir).as_bytes()
        );
        assert_ne!(
            a.as_bytes(),
            &skeyseed(Prf::HmacSha256, &ni2, &nr, &g_ir).as_bytes()[..16]
        );
        // Short (invalid) nonces must not panic.
        let _ = skeyseed(Prf::Aes128Xcbc, &[1], &[], &g_ir);
    }

    #[test]
    fn ciphers_pair_up_across_roles() {
        let (ni, nr, g_ir) = inputs();
        for e in cases() {
            let keys = IkeKeys::initial(&e.suite, &g_ir, &ni, &nr, SPI_I, SPI_R).unwrap();
            let (mut i_out, i_in) = keys.ciphers(&e.suite, true).unwrap();
            let (mut r_out, r_in) = keys.ciphers(&e.suite, false).unwrap();
            for (tx, rx) in [(&mut i_out, &r_in), (&mut r_out, &i_in)] {
                let mut iv = vec![0; tx.iv_len()];
                tx.next_iv(&mut iv);
                let mut body = vec![3; 2 * tx.block_len()];
                let mut icv = vec![0; tx.icv_len()];
                tx.seal(b"aad", &iv, &mut body, &mut icv);
                assert!(rx.open(b"aad", &iv, &mut body, &icv), "{}", e.suite);
            }
        }
    }

    #[test]
    fn debug_hides_key_bytes() {
        let (ni, nr, g_ir) = inputs();
        let [e, ..] = cases();
        let keys = IkeKeys::initial(&e.suite, &g_ir, &ni, &nr, SPI_I, SPI_R).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("SecretBytes(32 bytes)"));
        assert!(!shown.contains("223") && !shown.contains("df4a"), "{shown}");
    }

    #[test]
    fn child_keys_take_encryption_then_integrity_per_direction() {
        // RFC 7296 2.17: all of the initiator-to-responder SA's keys come first, its
        // encryption key before its integrity key.
        let (ni, nr, _) = inputs();
        let sk_d = [0x5a; 32];
        let esp = EspSuite {
            encr: Encr::AesCbc128,
            integ: Some(Integ::HmacSha256_128),
            dh: None,
            esn: false,
        };
        let keys = ChildKeys::derive(Prf::HmacSha256, &sk_d, &esp, None, &ni, &nr).unwrap();
        let keymat = prf_plus(Prf::HmacSha256, &sk_d, &[&ni[..], &nr[..]].concat(), 96).unwrap();
        assert_eq!(keys.encr_i.as_bytes(), &keymat.as_bytes()[..48]);
        assert_eq!(keys.encr_r.as_bytes(), &keymat.as_bytes()[48..]);
        let sha1 = EspSuite {
            encr: Encr::AesCbc256,
            integ: Some(Integ::HmacSha1_96),
            ..esp
        };
        let keys = ChildKeys::derive(Prf::HmacSha1, &sk_d, &sha1, None, &ni, &nr).unwrap();
        assert_eq!((keys.encr_i.len(), keys.encr_r.len()), (52, 52));
    }
}
