//! The state machine's view of authentication: PSK AUTH (RFC 7296 2.15) and the signed
//! octets. Identities and certificates live in [`crate::auth`].

use crate::wire::Identification;

/// The negotiated PRF as a function of (key, data).
pub(crate) type PrfFn<'a> = &'a dyn Fn(&[u8], &[u8]) -> Vec<u8>;

/// RFC 7296 2.15: AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
pub(crate) fn psk_auth(prf: PrfFn<'_>, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    prf(&prf(psk, b"Key Pad for IKEv2"), octets)
}

/// Checks a PSK AUTH value in constant time.
pub(crate) fn psk_verify(prf: PrfFn<'_>, psk: &[u8], octets: &[u8], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let want = psk_auth(prf, psk, octets);
    want.len() == got.len() && bool::from(want.ct_eq(got))
}

/// RFC 7296 2.15: RealMessage | Nonce | prf(SK_p, RestOfIDPayload).
pub(crate) fn signed_octets(
    prf: PrfFn<'_>,
    message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id: &Identification,
) -> Vec<u8> {
    let mut rest = vec![id.id_type, 0, 0, 0];
    rest.extend_from_slice(&id.data);
    let mut out = Vec::with_capacity(message.len() + nonce.len() + 64);
    out.extend_from_slice(message);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&prf(sk_p, &rest));
    out
}
