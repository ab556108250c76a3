//! Encryption transforms (type 1): AES-GCM with a 16-byte ICV (RFC 4106, RFC 5282) and
//! AES-CBC (RFC 3602), and the raw AES-CBC operation on whole blocks.

use std::fmt;

use aes::cipher::consts::U16;
use aes::cipher::{
    BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, BlockSizeUser,
    KeyInit, KeyIvInit,
};
use aes::{Aes128, Aes192, Aes256};

use crate::iana::{encr as id, transform};
use crate::wire::Transform;

/// An encryption algorithm with its key size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_CBC with a 128-bit key.
    AesCbc128,
    /// ENCR_AES_CBC with a 192-bit key.
    AesCbc192,
    /// ENCR_AES_CBC with a 256-bit key.
    AesCbc256,
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 192-bit key.
    AesGcm16_192,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
}

/// Length of the salt that follows an AES-GCM key in SK_e or KEYMAT (RFC 4106 8.1, RFC 5282 7.1).
pub const GCM_SALT_LEN: usize = 4;

/// AES block size, the CBC IV length.
pub const AES_BLOCK_LEN: usize = 16;

impl Encr {
    /// All supported encryption algorithms.
    pub const ALL: [Encr; 6] = [
        Encr::AesCbc128,
        Encr::AesCbc192,
        Encr::AesCbc256,
        Encr::AesGcm16_128,
        Encr::AesGcm16_192,
        Encr::AesGcm16_256,
    ];

    /// The algorithm a wire transform names; AES requires the Key Length attribute
    /// (RFC 7296 3.3.5).
    pub fn from_transform(t: &Transform) -> Option<Self> {
        if t.kind != transform::ENCR {
            return None;
        }
        Self::ALL
            .into_iter()
            .find(|e| e.id() == t.id && Some(e.key_bits()) == t.key_length)
    }

    /// IANA transform ID.
    pub fn id(self) -> u16 {
        if self.is_aead() {
            id::AES_GCM_16
        } else {
            id::AES_CBC
        }
    }

    /// Key size in bits, the value of the Key Length attribute.
    pub fn key_bits(self) -> u16 {
        match self {
            Encr::AesCbc128 | Encr::AesGcm16_128 => 128,
            Encr::AesCbc192 | Encr::AesGcm16_192 => 192,
            Encr::AesCbc256 | Encr::AesGcm16_256 => 256,
        }
    }

    /// The wire transform, with its Key Length attribute.
    pub fn transform(self) -> Transform {
        Transform {
            kind: transform::ENCR,
            id: self.id(),
            key_length: Some(self.key_bits()),
        }
    }

    /// True for AES-GCM, which needs no integrity transform.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            Encr::AesGcm16_128 | Encr::AesGcm16_192 | Encr::AesGcm16_256
        )
    }

    /// Length of the AES key alone in bytes.
    pub fn aes_key_len(self) -> usize {
        usize::from(self.key_bits() / 8)
    }

    /// Keying material length in bytes: the size of SK_ei/SK_er or of one direction's
    /// ESP encryption key. For GCM this is the key plus a 4-byte salt (RFC 5282 7.1,
    /// RFC 4106 8.1).
    pub fn key_len(self) -> usize {
        if self.is_aead() {
            self.aes_key_len() + GCM_SALT_LEN
        } else {
            self.aes_key_len()
        }
    }

    /// Length of the IV carried in each message: 8 for GCM (RFC 5282 3.1), a block for
    /// CBC (RFC 3602 2.1).
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            AES_BLOCK_LEN
        }
    }

    /// The plaintext is padded to a multiple of this.
    pub fn block_len(self) -> usize {
        if self.is_aead() {
            1
        } else {
            AES_BLOCK_LEN
        }
    }

    /// strongSwan's proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Encr::AesCbc128 => "aes128",
            Encr::AesCbc192 => "aes192",
            Encr::AesCbc256 => "aes256",
            Encr::AesGcm16_128 => "aes128gcm16",
            Encr::AesGcm16_192 => "aes192gcm16",
            Encr::AesGcm16_256 => "aes256gcm16",
        }
    }
}

impl fmt::Display for Encr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// AES-CBC encryption in place without padding. Returns false (and leaves `buf`
/// untouched) if the key or IV length is wrong or `buf` is not whole blocks.
pub(crate) fn cbc_encrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) -> bool {
    if iv.len() != AES_BLOCK_LEN || buf.len() % AES_BLOCK_LEN != 0 {
        return false;
    }
    match key.len() {
        16 => cbc_enc::<Aes128>(key, iv, buf),
        24 => cbc_enc::<Aes192>(key, iv, buf),
        32 => cbc_enc::<Aes256>(key, iv, buf),
        _ => false,
    }
}

/// AES-CBC decryption in place, same conditions as [`cbc_encrypt`].
pub(crate) fn cbc_decrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) -> bool {
    if iv.len() != AES_BLOCK_LEN || buf.len() % AES_BLOCK_LEN != 0 {
        return false;
    }
    match key.len() {
        16 => cbc_dec::<Aes128>(key, iv, buf),
        24 => cbc_dec::<Aes192>(key, iv, buf),
        32 => cbc_dec::<Aes256>(key, iv, buf),
        _ => false,
    }
}

fn cbc_enc<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> bool
where
    C: BlockCipher + BlockEncrypt + KeyInit + BlockSizeUser<BlockSize = U16>,
{
    let Ok(mut enc) = cbc::Encryptor::<C>::new_from_slices(key, iv) else {
        return false;
    };
    for block in buf.chunks_exact_mut(AES_BLOCK_LEN) {
        enc.encrypt_block_mut(block.into());
    }
    true
}

fn cbc_dec<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> bool
where
    C: BlockCipher + BlockDecrypt + KeyInit + BlockSizeUser<BlockSize = U16>,
{
    let Ok(mut dec) = cbc::Decryptor::<C>::new_from_slices(key, iv) else {
        return false;
    };
    for block in buf.chunks_exact_mut(AES_BLOCK_LEN) {
        dec.decrypt_block_mut(block.into());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    // RFC 3602 4, case #2 (two blocks, AES-128).
    #[test]
    fn rfc3602_aes_cbc() {
        let key = hex("c286696d887c9aa0611bbb3e2025a45a");
        let iv = hex("562e17996d093d28ddb3ba695a2e6f58");
        let pt = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let ct = hex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1");
        let mut buf = pt.clone();
        assert!(cbc_encrypt(&key, &iv, &mut buf));
        assert_eq!(buf, ct);
        assert!(cbc_decrypt(&key, &iv, &mut buf));
        assert_eq!(buf, pt);
    }

    #[test]
    fn cbc_rejects_partial_blocks_and_bad_keys() {
        let mut buf = [0u8; 17];
        assert!(!cbc_encrypt(&[0; 16], &[0; 16], &mut buf));
        assert!(!cbc_decrypt(&[0; 16], &[0; 16], &mut [0u8; 15]));
        assert!(!cbc_encrypt(&[0; 20], &[0; 16], &mut [0u8; 16]));
        assert!(!cbc_encrypt(&[0; 16], &[0; 8], &mut [0u8; 16]));
        for k in [16, 24, 32] {
            let mut b = [5u8; 32];
            assert!(cbc_encrypt(&vec![1; k], &[2; 16], &mut b));
            assert!(cbc_decrypt(&vec![1; k], &[2; 16], &mut b));
            assert_eq!(b, [5u8; 32]);
        }
    }

    #[test]
    fn transform_round_trip_and_lengths() {
        for e in Encr::ALL {
            assert_eq!(Encr::from_transform(&e.transform()), Some(e));
        }
        let no_len = Transform {
            key_length: None,
            ..Encr::AesCbc128.transform()
        };
        assert_eq!(Encr::from_transform(&no_len), None);
        assert_eq!(Encr::AesGcm16_256.key_len(), 36);
        assert_eq!(Encr::AesCbc192.key_len(), 24);
    }
}
