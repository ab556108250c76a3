//! The keys of one IKE SA, and the derivations that need them: the seam between the
//! state machine and `crate::crypto`.

use zeroize::Zeroizing;

use crate::crypto::{self, ChildKeys, CryptoError, DhKeyPair, Prf, Rng, SecretBytes};
use crate::proposal::{EspSuite, IkeSuite};
use crate::wire::SkCipher;

/// KEYMAT of one direction of a child SA.
pub(crate) type Keymat = Zeroizing<Vec<u8>>;

/// An ephemeral Diffie-Hellman key of one exchange, addressed by group number.
pub(crate) struct Dh(DhKeyPair);

impl Dh {
    /// A fresh key pair in `group` (a `crate::iana::dh` number).
    pub(crate) fn generate(group: u16, rng: &mut dyn Rng) -> Result<Dh, CryptoError> {
        let g = crypto::Dh::from_id(group).ok_or(CryptoError::UnsupportedGroup(group))?;
        DhKeyPair::generate(g, rng).map(Dh)
    }

    /// The group number.
    pub(crate) fn group(&self) -> u16 {
        self.0.group().id()
    }

    /// Our public value for the KE payload.
    pub(crate) fn public_key(&self) -> &[u8] {
        self.0.public_value()
    }

    /// g^ir from the peer's public value.
    pub(crate) fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.0.shared_secret(peer)
    }
}

/// SK_d, SK_pi, SK_pr and the two SK payload ciphers of an IKE SA.
pub(crate) struct IkeKeys {
    pub(crate) prf: Prf,
    pub(crate) keys: crypto::IkeKeys,
    /// Protects what we send.
    pub(crate) cipher_out: Box<dyn SkCipher + Send>,
    /// Opens what we receive.
    pub(crate) cipher_in: Box<dyn SkCipher + Send>,
}

impl IkeKeys {
    fn wrap(
        suite: &IkeSuite,
        keys: crypto::IkeKeys,
        initiator: bool,
    ) -> Result<IkeKeys, CryptoError> {
        let (out, inn) = keys.ciphers(suite, initiator)?;
        Ok(IkeKeys {
            prf: suite.prf,
            keys,
            cipher_out: Box::new(out),
            cipher_in: Box::new(inn),
        })
    }

    /// Keys of a new IKE SA (RFC 7296 2.14). `initiator`: we are its initiator.
    pub(crate) fn derive(
        suite: &IkeSuite,
        ni: &[u8],
        nr: &[u8],
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
    ) -> Result<IkeKeys, CryptoError> {
        let k = crypto::IkeKeys::initial(suite, shared, ni, nr, spi_i, spi_r)?;
        Self::wrap(suite, k, initiator)
    }

    /// Keys of the IKE SA that replaces this one (RFC 7296 2.18: SKEYSEED with the old
    /// SA's PRF and SK_d).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rekey(
        &self,
        suite: &IkeSuite,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
    ) -> Result<IkeKeys, CryptoError> {
        let k = self
            .keys
            .rekeyed(self.prf, suite, shared, ni, nr, spi_i, spi_r)?;
        Self::wrap(suite, k, initiator)
    }

    /// SK_pi.
    pub(crate) fn sk_pi(&self) -> &[u8] {
        self.keys.sk_pi.as_bytes()
    }

    /// SK_pr.
    pub(crate) fn sk_pr(&self) -> &[u8] {
        self.keys.sk_pr.as_bytes()
    }

    /// prf(key, data) with the negotiated PRF.
    pub(crate) fn prf(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.prf.compute(key, data).as_bytes().to_vec()
    }

    /// Child SA KEYMAT (RFC 7296 2.17): (initiator -> responder, responder -> initiator),
    /// where initiator is whoever started the exchange.
    pub(crate) fn child_keys(
        &self,
        suite: &EspSuite,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<(Keymat, Keymat), CryptoError> {
        let k = ChildKeys::derive(self.prf, self.keys.sk_d.as_bytes(), suite, shared, ni, nr)?;
        Ok((
            Zeroizing::new(k.encr_i.as_bytes().to_vec()),
            Zeroizing::new(k.encr_r.as_bytes().to_vec()),
        ))
    }
}
