//! MODP key exchange (transform type 4): the 1024-bit group of RFC 2409 6.2, the
//! 2048/3072/4096-bit groups of RFC 3526, and the 2048-bit group with a 256-bit
//! prime-order subgroup of RFC 5114 2.3.
//!
//! Exponentiation is crypto-bigint's constant-time Montgomery ladder at the group's
//! width, bounded to the private exponent's length (which is public). Public values and
//! shared secrets are big-endian and padded to the modulus length (RFC 7296 2.14).
//! A peer's value must lie in 2..p-2, and for the RFC 5114 group in the subgroup of
//! order q too (RFC 6989 2.1, 2.2).

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::Uint;
use zeroize::Zeroizing;

/// RFC 2409 6.2, group 2: 2^1024 - 2^960 - 1 + 2^64 * ([2^894 pi] + 129093).
const P_1024: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
];
/// RFC 3526 3, group 14: 2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476).
const P_2048: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
];
/// RFC 3526 4, group 15: 2^3072 - 2^3008 - 1 + 2^64 * ([2^2942 pi] + 1690314).
const P_3072: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
];
/// RFC 3526 5, group 16: 2^4096 - 2^4032 - 1 + 2^64 * ([2^3966 pi] + 240904).
const P_4096: &[&str] = &[
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
];
/// RFC 5114 2.3, group 24: the prime.
const P_2048_256: &[&str] = &[
    "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F25D2CEED4435E3B00",
    "E00DF8F1D61957D4FAF7DF4561B2AA3016C3D91134096FAA3BF4296D830E9A7C",
    "209E0C6497517ABD5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B",
    "6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C4FDB70C581B23F76",
    "B63ACAE1CAA6B7902D52526735488A0EF13C6D9A51BFA4AB3AD8347796524D8E",
    "F6A167B5A41825D967E144E5140564251CCACB83E6B486F6B3CA3F7971506026",
    "C0B857F689962856DED4010ABD0BE621C3A3960A54E710C375F26375D7014103",
    "A4B54330C198AF126116D2276E11715F693877FAD7EF09CADB094AE91E1A1597",
];
/// RFC 5114 2.3, group 24: the generator.
const G_2048_256: &[&str] = &[
    "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF205407F4793A1A0BA125",
    "10DBC15077BE463FFF4FED4AAC0BB555BE3A6C1B0C6B47B1BC3773BF7E8C6F62",
    "901228F8C28CBB18A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B",
    "777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC831D14348F6F2F9193",
    "B5045AF2767164E1DFC967C1FB3F2E55A4BD1BFFE83B9C80D052B985D182EA0A",
    "DB2A3B7313D3FE14C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915",
    "B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6184B523D1DB246C3",
    "2F63078490F00EF8D647D148D47954515E2327CFEF98C582664B4C0F6CC41659",
];
/// RFC 5114 2.3, group 24: the order of the subgroup `G_2048_256` generates.
const Q_2048_256: &[&str] = &["8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3"];

/// One MODP group's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Group {
    prime: &'static [&'static str],
    /// `None`: the generator 2.
    generator: Option<&'static [&'static str]>,
    /// The subgroup order, for groups whose generator does not generate the whole group.
    order: Option<&'static [&'static str]>,
    /// Bytes of the modulus (and so of public values and shared secrets).
    pub(crate) len: usize,
    /// Bytes of our private exponent: twice the group's strength at least, as RFC 3526 8
    /// suggests (strongSwan's lengths).
    pub(crate) exponent_len: usize,
}

/// RFC 2409 group 2.
pub(crate) const MODP_1024: Group = Group {
    prime: P_1024,
    generator: None,
    order: None,
    len: 128,
    exponent_len: 32,
};
/// RFC 3526 group 14.
pub(crate) const MODP_2048: Group = Group {
    prime: P_2048,
    generator: None,
    order: None,
    len: 256,
    exponent_len: 48,
};
/// RFC 3526 group 15.
pub(crate) const MODP_3072: Group = Group {
    prime: P_3072,
    generator: None,
    order: None,
    len: 384,
    exponent_len: 48,
};
/// RFC 3526 group 16.
pub(crate) const MODP_4096: Group = Group {
    prime: P_4096,
    generator: None,
    order: None,
    len: 512,
    exponent_len: 64,
};
/// RFC 5114 group 24: the exponent is drawn below 2^256, the subgroup order's size.
pub(crate) const MODP_2048_256: Group = Group {
    prime: P_2048_256,
    generator: Some(G_2048_256),
    order: Some(Q_2048_256),
    len: 256,
    exponent_len: 32,
};

/// Why a peer's public value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// 0, 1, p-1 or above: RFC 6989 2.1.
    OutOfRange,
    /// Not in the subgroup of order q: RFC 6989 2.2.
    NotInSubgroup,
}

fn unhex(parts: &[&str]) -> Vec<u8> {
    let s: String = parts.concat();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// `bytes` (big-endian, at most `LIMBS` words) as a number.
fn uint<const LIMBS: usize>(bytes: &[u8]) -> Uint<LIMBS> {
    let mut padded = Zeroizing::new(vec![0u8; LIMBS * 8]);
    let start = padded.len() - bytes.len();
    padded[start..].copy_from_slice(bytes);
    Uint::from_be_slice(&padded)
}

/// A number as `len` big-endian bytes.
fn bytes<const LIMBS: usize>(n: &Uint<LIMBS>, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = n
        .as_words()
        .iter()
        .rev()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    out.drain(..out.len() - len);
    out
}

impl Group {
    /// g^x mod p: our public value from our exponent.
    pub(crate) fn public(&self, x: &[u8]) -> Vec<u8> {
        match self.len {
            128 => self.public_at::<16>(x),
            256 => self.public_at::<32>(x),
            384 => self.public_at::<48>(x),
            _ => self.public_at::<64>(x),
        }
    }

    /// y^x mod p: the shared secret from the peer's checked public value.
    pub(crate) fn shared(&self, x: &[u8], y: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refused> {
        match self.len {
            128 => self.shared_at::<16>(x, y),
            256 => self.shared_at::<32>(x, y),
            384 => self.shared_at::<48>(x, y),
            _ => self.shared_at::<64>(x, y),
        }
    }

    fn params<const LIMBS: usize>(&self) -> DynResidueParams<LIMBS> {
        DynResidueParams::new(&uint::<LIMBS>(&unhex(self.prime)))
    }

    fn public_at<const LIMBS: usize>(&self, x: &[u8]) -> Vec<u8> {
        let params = self.params::<LIMBS>();
        let g = match self.generator {
            Some(g) => uint::<LIMBS>(&unhex(g)),
            None => Uint::from_u8(2),
        };
        let x = Zeroizing::new(uint::<LIMBS>(x));
        let y = DynResidue::new(&g, params).pow_bounded_exp(&x, self.exponent_len * 8);
        bytes(&y.retrieve(), self.len)
    }

    fn shared_at<const LIMBS: usize>(
        &self,
        x: &[u8],
        y: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Refused> {
        let p = uint::<LIMBS>(&unhex(self.prime));
        let y = uint::<LIMBS>(y);
        let p_minus_1 = p.wrapping_sub(&Uint::ONE);
        // 1 < y < p - 1; the value is public, so plain comparisons are fine.
        if y <= Uint::ONE || y >= p_minus_1 {
            return Err(Refused::OutOfRange);
        }
        let params = self.params::<LIMBS>();
        let ry = DynResidue::new(&y, params);
        if let Some(q) = self.order {
            let q = uint::<LIMBS>(&unhex(q));
            if ry.pow_bounded_exp(&q, q.bits()).retrieve() != Uint::ONE {
                return Err(Refused::NotInSubgroup);
            }
        }
        let x = Zeroizing::new(uint::<LIMBS>(x));
        let z = ry.pow_bounded_exp(&x, self.exponent_len * 8).retrieve();
        Ok(Zeroizing::new(bytes(&z, self.len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_have_their_sizes() {
        for g in [MODP_1024, MODP_2048, MODP_3072, MODP_4096, MODP_2048_256] {
            let p = unhex(g.prime);
            assert_eq!(p.len(), g.len);
            assert!(p[0] & 0x80 != 0 && p[g.len - 1] & 1 == 1);
        }
        assert_eq!(unhex(Q_2048_256).len(), 32);
    }

    #[test]
    fn p_minus_one_and_p_are_refused() {
        for g in [MODP_1024, MODP_2048, MODP_3072, MODP_4096, MODP_2048_256] {
            let x = vec![7u8; g.exponent_len];
            let p = unhex(g.prime);
            let mut p_minus_1 = p.clone();
            p_minus_1[g.len - 1] -= 1; // the primes are odd
            assert_eq!(g.shared(&x, &p_minus_1).unwrap_err(), Refused::OutOfRange);
            assert_eq!(g.shared(&x, &p).unwrap_err(), Refused::OutOfRange);
            let mut p_minus_2 = p;
            p_minus_2[g.len - 1] -= 2;
            // p - 2 is in range: refused only where a subgroup is checked.
            assert_eq!(g.shared(&x, &p_minus_2).is_ok(), g.order.is_none());
        }
    }

    #[test]
    fn rfc5114_generator_has_order_q() {
        // g^q = 1 mod p: the published generator lies in the subgroup of order q.
        let g = unhex(G_2048_256);
        let q = unhex(Q_2048_256);
        let mut y = MODP_2048_256;
        y.exponent_len = 32;
        let one = {
            let params = y.params::<32>();
            DynResidue::new(&uint::<32>(&g), params)
                .pow_bounded_exp(&uint::<32>(&q), 256)
                .retrieve()
        };
        assert_eq!(one, Uint::ONE);
    }
}
