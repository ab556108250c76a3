//! SA payload (RFC 7296 3.3): proposals (3.3.1), transforms (3.3.2) and transform
//! attributes (3.3.5).
//!
//! ```text
//! Proposal:
//! | Last Substruc |   RESERVED    |         Proposal Length       |
//! | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//! ~                        SPI (variable)                         ~
//! ~                        <Transforms>                           ~
//!
//! Transform:
//! | Last Substruc |   RESERVED    |        Transform Length       |
//! |Transform Type |   RESERVED    |          Transform ID         |
//! ~                      Transform Attributes                     ~
//!
//! Attribute:
//! |A|       Attribute Type        |    AF=0  Attribute Length     |
//! |                               |    AF=1  Attribute Value      |
//! |                   AF=0  Attribute Value                       |
//! ```

use super::cursor::{count8, put_len16, put_u16, Reader};
use super::{Proposal, Transform, WireError, MAX_PROPOSALS, MAX_TRANSFORMS};
use crate::iana::attr;

/// Last Substruc value of the last proposal or transform.
pub const LAST: u8 = 0;
/// Last Substruc value of a proposal that more proposals follow.
pub const MORE_PROPOSALS: u8 = 2;
/// Last Substruc value of a transform that more transforms follow.
pub const MORE_TRANSFORMS: u8 = 3;

const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;
// RFC 7296 3.3.5: AF set means the short TV format, the value in place of the length.
const ATTR_TV: u16 = 0x8000;

/// Checks a Last Substruc byte against whether more substructures follow.
fn check_last(value: Option<&u8>, more: bool, more_value: u8) -> Result<(), WireError> {
    match (value.copied(), more) {
        (Some(LAST), false) => Ok(()),
        (Some(v), true) if v == more_value => Ok(()),
        _ => Err(WireError::Invalid("Last Substruc")),
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(kind: u8, id: u16) -> Self {
        Transform {
            kind,
            id,
            key_length: None,
        }
    }

    /// A transform with a Key Length attribute, in bits.
    pub fn with_key_length(kind: u8, id: u16, bits: u16) -> Self {
        Transform {
            kind,
            id,
            key_length: Some(bits),
        }
    }

    /// Decodes one transform that fills `buf` exactly; the Last Substruc byte is judged
    /// by the enclosing proposal. Attributes other than Key Length are skipped.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        r.take(2, "transform")?;
        let len = usize::from(r.u16("transform")?);
        if len != buf.len() {
            return Err(WireError::BadLength("transform"));
        }
        let kind = r.u8("transform")?;
        r.take(1, "transform")?;
        let id = r.u16("transform")?;
        let mut key_length = None;
        while !r.is_empty() {
            let attr_type = r.u16("transform attribute")?;
            if attr_type & ATTR_TV != 0 {
                let value = r.u16("transform attribute")?;
                if attr_type & !ATTR_TV == attr::KEY_LENGTH {
                    if key_length.is_some() {
                        return Err(WireError::Invalid("duplicate Key Length"));
                    }
                    key_length = Some(value);
                }
            } else {
                // RFC 7296 3.3.5: Key Length is TV only.
                if attr_type == attr::KEY_LENGTH {
                    return Err(WireError::Invalid("Key Length format"));
                }
                let alen = usize::from(r.u16("transform attribute")?);
                r.take(alen, "transform attribute")?;
            }
        }
        Ok(Transform {
            kind,
            id,
            key_length,
        })
    }

    /// Length of the transform substructure.
    pub fn buffer_len(&self) -> usize {
        TRANSFORM_HEADER_LEN + if self.key_length.is_some() { 4 } else { 0 }
    }

    /// Appends the transform; `last` when no transform follows in the proposal.
    pub fn emit(&self, last: bool, out: &mut Vec<u8>) {
        out.push(if last { LAST } else { MORE_TRANSFORMS });
        out.push(0);
        put_len16(out, self.buffer_len());
        out.push(self.kind);
        out.push(0);
        put_u16(out, self.id);
        if let Some(bits) = self.key_length {
            put_u16(out, ATTR_TV | attr::KEY_LENGTH);
            put_u16(out, bits);
        }
    }
}

impl Proposal {
    /// Decodes one proposal that fills `buf` exactly; the Last Substruc byte is judged
    /// by the SA payload.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        r.take(2, "proposal")?;
        let len = usize::from(r.u16("proposal")?);
        if len != buf.len() {
            return Err(WireError::BadLength("proposal"));
        }
        let number = r.u8("proposal")?;
        let protocol = r.u8("proposal")?;
        let spi_size = usize::from(r.u8("proposal")?);
        let count = usize::from(r.u8("proposal")?);
        if count > MAX_TRANSFORMS {
            return Err(WireError::TooMany("transforms"));
        }
        let spi = r.take(spi_size, "proposal SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(count);
        while !r.is_empty() {
            if transforms.len() >= count {
                return Err(WireError::Invalid("number of transforms"));
            }
            let sub = r.sub(2, TRANSFORM_HEADER_LEN, "transform")?;
            check_last(sub.first(), !r.is_empty(), MORE_TRANSFORMS)?;
            transforms.push(Transform::parse(sub)?);
        }
        if transforms.len() != count {
            return Err(WireError::Invalid("number of transforms"));
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    /// Length of the proposal substructure.
    pub fn buffer_len(&self) -> usize {
        PROPOSAL_HEADER_LEN
            + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    /// Appends the proposal; `last` when no proposal follows in the SA payload.
    pub fn emit(&self, last: bool, out: &mut Vec<u8>) {
        out.push(if last { LAST } else { MORE_PROPOSALS });
        out.push(0);
        put_len16(out, self.buffer_len());
        out.push(self.number);
        out.push(self.protocol);
        out.push(count8(self.spi.len()));
        out.push(count8(self.transforms.len()));
        out.extend_from_slice(&self.spi);
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(i + 1 == n, out);
        }
    }

    /// The first transform of type `kind`, if any.
    pub fn transform(&self, kind: u8) -> Option<&Transform> {
        self.transforms.iter().find(|t| t.kind == kind)
    }
}

/// Decodes an SA payload body.
pub fn parse(body: &[u8]) -> Result<Vec<Proposal>, WireError> {
    let mut r = Reader::new(body);
    let mut proposals = Vec::new();
    // RFC 7296 3.3: an SA payload holds one or more proposals.
    if r.is_empty() {
        return Err(WireError::Invalid("empty SA payload"));
    }
    while !r.is_empty() {
        if proposals.len() >= MAX_PROPOSALS {
            return Err(WireError::TooMany("proposals"));
        }
        let sub = r.sub(2, PROPOSAL_HEADER_LEN, "proposal")?;
        check_last(sub.first(), !r.is_empty(), MORE_PROPOSALS)?;
        proposals.push(Proposal::parse(sub)?);
    }
    Ok(proposals)
}

/// Length of an SA payload body.
pub fn buffer_len(proposals: &[Proposal]) -> usize {
    proposals.iter().map(Proposal::buffer_len).sum()
}

/// Appends an SA payload body.
pub fn emit(proposals: &[Proposal], out: &mut Vec<u8>) {
    let n = proposals.len();
    for (i, p) in proposals.iter().enumerate() {
        p.emit(i + 1 == n, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::{dh, encr, esn, integ, prf, protocol, transform};

    /// IKE proposal: AES-GCM-16-256, PRF-HMAC-SHA2-256, Curve25519.
    #[rustfmt::skip]
    static IKE_SA: [u8; 36] = [
        0x00, 0x00, 0x00, 0x24, // last proposal, length 36
        0x01, 0x01, 0x00, 0x03, // #1, IKE, no SPI, 3 transforms
        0x03, 0x00, 0x00, 0x0c, // more transforms, length 12
        0x01, 0x00, 0x00, 0x14, // ENCR AES-GCM-16
        0x80, 0x0e, 0x01, 0x00, // TV Key Length 256
        0x03, 0x00, 0x00, 0x08, // more transforms, length 8
        0x02, 0x00, 0x00, 0x05, // PRF HMAC-SHA2-256
        0x00, 0x00, 0x00, 0x08, // last transform, length 8
        0x04, 0x00, 0x00, 0x1f, // DH 31
    ];

    fn ike_proposal() -> Proposal {
        Proposal {
            number: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, encr::AES_GCM_16, 256),
                Transform::new(transform::PRF, prf::HMAC_SHA2_256),
                Transform::new(transform::DH, dh::CURVE25519),
            ],
        }
    }

    #[test]
    fn ike_golden() {
        assert_eq!(parse(&IKE_SA), Ok(vec![ike_proposal()]));
        let mut out = Vec::new();
        emit(&[ike_proposal()], &mut out);
        assert_eq!(out, IKE_SA);
        assert_eq!(buffer_len(&[ike_proposal()]), IKE_SA.len());
        for n in 0..IKE_SA.len() {
            assert!(parse(&IKE_SA[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn two_proposals_with_spi() {
        let esp = Proposal {
            number: 2,
            protocol: protocol::ESP,
            spi: vec![0xc1, 0xc2, 0xc3, 0xc4],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, encr::AES_CBC, 128),
                Transform::new(transform::INTEG, integ::HMAC_SHA2_256_128),
                Transform::new(transform::ESN, esn::NO),
            ],
        };
        let sa = vec![ike_proposal(), esp];
        let mut out = Vec::new();
        emit(&sa, &mut out);
        assert_eq!(out[0], MORE_PROPOSALS);
        assert_eq!(parse(&out), Ok(sa.clone()));
        assert_eq!(
            sa[1].transform(transform::INTEG),
            Some(&Transform::new(transform::INTEG, integ::HMAC_SHA2_256_128))
        );
    }

    #[test]
    fn unknown_attributes_are_skipped() {
        #[rustfmt::skip]
        let t = [
            0x00, 0x00, 0x00, 0x18, // last, length 24
            0x01, 0x00, 0x00, 0x0c, // ENCR AES-CBC
            0x80, 0x63, 0x12, 0x34, // unknown TV attribute 99
            0x00, 0x64, 0x00, 0x02, 0xab, 0xcd, // unknown TLV attribute 100, 2 bytes
            0x80, 0x0e, 0x00, 0x80, // Key Length 128
            0x00, 0x00, // trailing TLV header cut short
        ];
        assert!(Transform::parse(&t).is_err());
        let mut ok = t;
        ok[3] = 22;
        assert_eq!(
            Transform::parse(&ok[..22]),
            Ok(Transform::with_key_length(
                transform::ENCR,
                encr::AES_CBC,
                128
            ))
        );
    }

    #[test]
    fn rejects_malformed() {
        let mut bad_last = IKE_SA;
        bad_last[0] = MORE_PROPOSALS;
        assert_eq!(parse(&bad_last), Err(WireError::Invalid("Last Substruc")));
        let mut bad_tlast = IKE_SA;
        bad_tlast[8] = LAST;
        assert_eq!(parse(&bad_tlast), Err(WireError::Invalid("Last Substruc")));
        let mut bad_count = IKE_SA;
        bad_count[7] = 2;
        assert!(parse(&bad_count).is_err());
        bad_count[7] = 4;
        assert!(parse(&bad_count).is_err());
        let mut tlv_key = IKE_SA;
        tlv_key[16..20].copy_from_slice(&[0x00, 0x0e, 0x00, 0x00]);
        assert_eq!(
            parse(&tlv_key),
            Err(WireError::Invalid("Key Length format"))
        );
        let mut short = IKE_SA;
        short[3] = 7;
        assert!(parse(&short).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn proposal_limit() {
        let mut out = Vec::new();
        let many: Vec<Proposal> = (0..=MAX_PROPOSALS).map(|_| ike_proposal()).collect();
        emit(&many, &mut out);
        assert_eq!(parse(&out), Err(WireError::TooMany("proposals")));
        let p = Proposal {
            transforms: vec![Transform::new(transform::DH, 1); MAX_TRANSFORMS + 1],
            ..ike_proposal()
        };
        let mut out = Vec::new();
        emit(&[p], &mut out);
        assert_eq!(parse(&out), Err(WireError::TooMany("transforms")));
    }
}
