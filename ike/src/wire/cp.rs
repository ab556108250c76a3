//! CP payload (RFC 7296 3.15).
//!
//! ```text
//! |   CFG Type    |                    RESERVED                   |
//! ~                   Configuration Attributes                    ~
//!
//! |R|         Attribute Type      |            Length             |
//! ~                             Value                             ~
//! ```

use super::cursor::{put_len16, put_u16, Reader};
use super::{Configuration, WireError, MAX_CP_ATTRIBUTES};

// RFC 7296 3.15.1: the top bit of the attribute type is reserved.
const TYPE_MASK: u16 = 0x7fff;

impl Configuration {
    /// Decodes a CP payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let cfg_type = r.u8("CP payload")?;
        r.take(3, "CP payload")?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            if attributes.len() >= MAX_CP_ATTRIBUTES {
                return Err(WireError::TooMany("CP attributes"));
            }
            let kind = r.u16("CP attribute")? & TYPE_MASK;
            let len = usize::from(r.u16("CP attribute")?);
            let value = r.take(len, "CP attribute")?;
            attributes.push((kind, value.to_vec()));
        }
        Ok(Configuration {
            cfg_type,
            attributes,
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self
            .attributes
            .iter()
            .map(|(_, v)| 4 + v.len())
            .sum::<usize>()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cfg_type, 0, 0, 0]);
        for (kind, value) in &self.attributes {
            put_u16(out, kind & TYPE_MASK);
            put_len16(out, value.len());
            out.extend_from_slice(value);
        }
    }

    /// Values of every attribute of type `kind`, in order.
    pub fn values(&self, kind: u16) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::cfg;

    #[test]
    fn request_and_reply() {
        // CFG_REQUEST asking for an IPv4 address and DNS (empty values).
        let req = [1, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0];
        let c = Configuration {
            cfg_type: cfg::REQUEST,
            attributes: vec![
                (cfg::INTERNAL_IP4_ADDRESS, vec![]),
                (cfg::INTERNAL_IP4_DNS, vec![]),
            ],
        };
        assert_eq!(Configuration::parse(&req), Ok(c.clone()));
        let mut out = Vec::new();
        c.emit(&mut out);
        assert_eq!(out, req);
        assert_eq!(c.buffer_len(), req.len());

        let reply = Configuration {
            cfg_type: cfg::REPLY,
            attributes: vec![(cfg::INTERNAL_IP4_ADDRESS, vec![10, 0, 0, 2])],
        };
        let mut out = Vec::new();
        reply.emit(&mut out);
        assert_eq!(Configuration::parse(&out), Ok(reply.clone()));
        assert_eq!(
            reply.values(cfg::INTERNAL_IP4_ADDRESS).collect::<Vec<_>>(),
            [&[10, 0, 0, 2]]
        );
        for n in 0..out.len() {
            if n != 4 {
                assert!(Configuration::parse(&out[..n]).is_err(), "{n}");
            }
        }
    }

    #[test]
    fn reserved_bit_ignored_and_limit() {
        let c = Configuration::parse(&[2, 0, 0, 0, 0x80, 1, 0, 0]);
        assert_eq!(c.map(|c| c.attributes), Ok(vec![(1, vec![])]));
        let mut many = vec![1, 0, 0, 0];
        for _ in 0..=MAX_CP_ATTRIBUTES {
            many.extend_from_slice(&[0, 1, 0, 0]);
        }
        assert_eq!(
            Configuration::parse(&many),
            Err(WireError::TooMany("CP attributes"))
        );
    }
}
