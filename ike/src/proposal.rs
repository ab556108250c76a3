//! Cryptographic proposals: strongSwan's proposal syntax (`proposals` and
//! `esp_proposals` in swanctl.conf), SA payload proposals, and selection (RFC 7296 2.7,
//! 3.3.6).
//!
//! A proposal string is a `-`-separated list of algorithm keywords; several keywords of
//! one transform type are alternatives within the same proposal. A list of proposals is
//! separated by `,`, and the keyword `default` expands to the default list.
//!
//! Selection follows strongSwan's default: our configured proposals are walked in
//! order, and for each the first of the peer's proposals that matches is taken; within
//! a transform type our order is preferred too. So the configuration decides, as it
//! does in charon, whichever side initiates.

mod select;

pub use crate::crypto::{EspSuite, IkeSuite};
pub use select::Selected;

use std::fmt;

use crate::crypto::{Dh, Encr, Integ, Prf};
use crate::iana::{dh, esn, integ, protocol, transform};
use crate::wire::{self, Transform};

/// The protocol a proposal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// IKE SA proposals.
    Ike,
    /// ESP Child SA proposals.
    Esp,
}

impl Protocol {
    /// Protocol ID in the proposal substructure (RFC 7296 3.3.1).
    pub fn id(self) -> u8 {
        match self {
            Protocol::Ike => protocol::IKE,
            Protocol::Esp => protocol::ESP,
        }
    }

    /// Transform types a proposal of this protocol may carry (RFC 7296 3.3.3).
    fn transform_types(self) -> &'static [u8] {
        match self {
            Protocol::Ike => &[
                transform::ENCR,
                transform::INTEG,
                transform::PRF,
                transform::DH,
            ],
            Protocol::Esp => &[
                transform::ENCR,
                transform::INTEG,
                transform::DH,
                transform::ESN,
            ],
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Ike => "IKE",
            Protocol::Esp => "ESP",
        })
    }
}

/// Error parsing a proposal string or checking a peer's proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// A keyword that names no supported algorithm.
    #[error("unknown or unsupported algorithm '{0}' in proposal")]
    UnknownToken(String),
    /// A known algorithm that this protocol cannot use (a PRF in ESP, ESN in IKE).
    #[error("'{token}' cannot be used in {protocol} proposals")]
    NotForProtocol {
        /// The keyword.
        token: String,
        /// The protocol of the proposal.
        protocol: Protocol,
    },
    /// An empty proposal list.
    #[error("empty proposal list")]
    Empty,
    /// A proposal without an encryption algorithm.
    #[error("proposal '{0}' has no encryption algorithm")]
    MissingEncr(String),
    /// A non-AEAD proposal without an integrity algorithm.
    #[error("proposal '{0}' has no integrity algorithm")]
    MissingInteg(String),
    /// An IKE proposal without a PRF, given or derived from an integrity algorithm.
    #[error("proposal '{0}' has no PRF")]
    MissingPrf(String),
    /// An IKE proposal without a key exchange method.
    #[error("proposal '{0}' has no key exchange method")]
    MissingDh(String),
    /// AEAD and non-AEAD ciphers in one proposal.
    #[error("proposal '{0}' mixes AEAD and non-AEAD encryption")]
    MixedAead(String),
    /// None of the peer's proposals is acceptable (answer NO_PROPOSAL_CHOSEN).
    #[error("no acceptable proposal")]
    NoProposalChosen,
    /// A responder's answer is not one of the transforms we offered (RFC 7296 3.3.6).
    #[error("invalid proposal in reply: {0}")]
    InvalidReply(&'static str),
}

/// One configured proposal: per transform type, the acceptable algorithms in preference
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoProposal {
    /// Protocol.
    pub protocol: Protocol,
    /// Encryption algorithms.
    pub encr: Vec<Encr>,
    /// Integrity algorithms (empty with AEAD ciphers).
    pub integ: Vec<Integ>,
    /// PRFs (IKE only).
    pub prf: Vec<Prf>,
    /// Key exchange methods; empty for ESP without PFS.
    pub dh: Vec<Dh>,
    /// Extended sequence numbers, `false` meaning none (ESP only).
    pub esn: Vec<bool>,
}

enum Token {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(Dh),
    Esn(bool),
}

/// strongSwan's keywords and aliases for the algorithms we implement.
fn token(word: &str) -> Option<Token> {
    Some(match word {
        "aes" | "aes128" => Token::Encr(Encr::AesCbc128),
        "aes192" => Token::Encr(Encr::AesCbc192),
        "aes256" => Token::Encr(Encr::AesCbc256),
        "aes128gcm16" | "aes128gcm128" => Token::Encr(Encr::AesGcm16_128),
        "aes192gcm16" | "aes192gcm128" => Token::Encr(Encr::AesGcm16_192),
        "aes256gcm16" | "aes256gcm128" => Token::Encr(Encr::AesGcm16_256),
        "sha1" | "sha" => Token::Integ(Integ::HmacSha1_96),
        "sha256" | "sha2_256" => Token::Integ(Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integ(Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integ(Integ::HmacSha512_256),
        "aesxcbc" => Token::Integ(Integ::AesXcbc96),
        "prfsha1" => Token::Prf(Prf::HmacSha1),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "prfaesxcbc" => Token::Prf(Prf::Aes128Xcbc),
        "x25519" | "curve25519" => Token::Dh(Dh::Curve25519),
        "ecp256" => Token::Dh(Dh::Ecp256),
        "ecp384" => Token::Dh(Dh::Ecp384),
        "ecp521" => Token::Dh(Dh::Ecp521),
        "modp1024" => Token::Dh(Dh::Modp1024),
        "modp2048" => Token::Dh(Dh::Modp2048),
        "modp3072" => Token::Dh(Dh::Modp3072),
        "modp4096" => Token::Dh(Dh::Modp4096),
        "modp2048s256" => Token::Dh(Dh::Modp2048s256),
        "esn" => Token::Esn(true),
        "noesn" => Token::Esn(false),
        _ => return None,
    })
}

/// The PRF strongSwan derives from an integrity algorithm when none is given.
fn prf_for(integ: Integ) -> Prf {
    match integ {
        Integ::HmacSha1_96 => Prf::HmacSha1,
        Integ::HmacSha256_128 => Prf::HmacSha256,
        Integ::HmacSha384_192 => Prf::HmacSha384,
        Integ::HmacSha512_256 => Prf::HmacSha512,
        Integ::AesXcbc96 => Prf::Aes128Xcbc,
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl CryptoProposal {
    /// Parses one proposal such as `aes128gcm16-prfsha256-x25519`.
    pub fn parse(protocol: Protocol, s: &str) -> Result<Self, ProposalError> {
        let mut p = CryptoProposal {
            protocol,
            encr: Vec::new(),
            integ: Vec::new(),
            prf: Vec::new(),
            dh: Vec::new(),
            esn: Vec::new(),
        };
        for word in s.trim().split('-') {
            let lower = word.to_ascii_lowercase();
            let tok = token(&lower).ok_or_else(|| ProposalError::UnknownToken(word.to_string()))?;
            let not_for = || ProposalError::NotForProtocol {
                token: word.to_string(),
                protocol,
            };
            match (protocol, tok) {
                (Protocol::Esp, Token::Prf(_)) => return Err(not_for()),
                (Protocol::Ike, Token::Esn(_)) => return Err(not_for()),
                (_, Token::Encr(e)) => push_unique(&mut p.encr, e),
                (_, Token::Integ(i)) => push_unique(&mut p.integ, i),
                (_, Token::Prf(f)) => push_unique(&mut p.prf, f),
                (_, Token::Dh(d)) => push_unique(&mut p.dh, d),
                (_, Token::Esn(e)) => push_unique(&mut p.esn, e),
            }
        }
        let name = || s.trim().to_string();
        if p.encr.is_empty() {
            return Err(ProposalError::MissingEncr(name()));
        }
        let aead = p.encr.iter().filter(|e| e.is_aead()).count();
        if aead != 0 && aead != p.encr.len() {
            return Err(ProposalError::MixedAead(name()));
        }
        if protocol == Protocol::Ike {
            if p.prf.is_empty() {
                for &i in &p.integ {
                    push_unique(&mut p.prf, prf_for(i));
                }
            }
            if p.prf.is_empty() {
                return Err(ProposalError::MissingPrf(name()));
            }
            if p.dh.is_empty() {
                return Err(ProposalError::MissingDh(name()));
            }
            if aead != 0 {
                // As strongSwan: integrity algorithms only served to derive the PRF.
                p.integ.clear();
            } else if p.integ.is_empty() {
                return Err(ProposalError::MissingInteg(name()));
            }
        } else {
            if aead != 0 {
                // As for IKE: an AEAD cipher needs no integrity algorithm.
                p.integ.clear();
            } else if p.integ.is_empty() {
                return Err(ProposalError::MissingInteg(name()));
            }
            if p.esn.is_empty() {
                p.esn.push(false);
            }
        }
        Ok(p)
    }

    /// Our acceptable transforms of one type, in preference order.
    fn candidates(&self, kind: u8) -> Vec<Transform> {
        match kind {
            transform::ENCR => self.encr.iter().map(|e| e.transform()).collect(),
            transform::INTEG => self.integ.iter().map(|i| i.transform()).collect(),
            transform::PRF => self.prf.iter().map(|p| p.transform()).collect(),
            transform::DH => self.dh.iter().map(|d| d.transform()).collect(),
            transform::ESN => self.esn.iter().map(|&e| esn_transform(e)).collect(),
            _ => Vec::new(),
        }
    }

    /// All transforms, in the order strongSwan emits them (ENCR, INTEG, PRF, DH, ESN).
    pub fn transforms(&self) -> Vec<Transform> {
        [
            transform::ENCR,
            transform::INTEG,
            transform::PRF,
            transform::DH,
            transform::ESN,
        ]
        .into_iter()
        .flat_map(|kind| self.candidates(kind))
        .collect()
    }

    /// The proposal substructure for an SA payload.
    pub fn to_wire(&self, number: u8, spi: &[u8]) -> wire::Proposal {
        wire::Proposal {
            number,
            protocol: self.protocol.id(),
            spi: spi.to_vec(),
            transforms: self.transforms(),
        }
    }
}

impl fmt::Display for CryptoProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = Vec::new();
        names.extend(self.encr.iter().map(|e| e.name()));
        names.extend(self.integ.iter().map(|i| i.name()));
        names.extend(self.prf.iter().map(|p| p.name()));
        names.extend(self.dh.iter().map(|d| d.name()));
        if self.esn != [false] {
            names.extend(self.esn.iter().map(|&e| if e { "esn" } else { "noesn" }));
        }
        f.write_str(&names.join("-"))
    }
}

fn esn_transform(on: bool) -> Transform {
    Transform {
        kind: transform::ESN,
        id: if on { esn::YES } else { esn::NO },
        key_length: None,
    }
}

/// A configured list of proposals for one protocol, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalSet {
    protocol: Protocol,
    proposals: Vec<CryptoProposal>,
}

/// `default` for IKE: charon's default lists (AEAD first, then CBC with HMAC-SHA2, the
/// groups of at least 2048 bits) as far as esprit implements them, X25519 preferred.
/// SHA-1, MODP-1024 and the RFC 5114 group are used only when a proposal names them.
const DEFAULT_IKE: [&str; 2] = [
    "aes128gcm16-aes256gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
    "aes128-aes192-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
];

/// `default` for ESP: AES-GCM, then AES-CBC with HMAC-SHA2 (charon's default lists as far
/// as esprit implements them), no PFS.
const DEFAULT_ESP: [&str; 2] = [
    "aes128gcm16-aes256gcm16",
    "aes128-aes192-aes256-sha256-sha384-sha512",
];

impl ProposalSet {
    /// Parses a comma-separated list of proposals; `default` expands to the defaults.
    pub fn parse(protocol: Protocol, s: &str) -> Result<Self, ProposalError> {
        let mut proposals = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.eq_ignore_ascii_case("default") {
                proposals.extend(Self::default_for(protocol).proposals);
            } else {
                proposals.push(CryptoProposal::parse(protocol, item)?);
            }
        }
        if proposals.is_empty() {
            return Err(ProposalError::Empty);
        }
        Ok(Self {
            protocol,
            proposals,
        })
    }

    /// Parses IKE proposals (swanctl `proposals`).
    pub fn parse_ike(s: &str) -> Result<Self, ProposalError> {
        Self::parse(Protocol::Ike, s)
    }

    /// Parses ESP proposals (swanctl `esp_proposals`).
    pub fn parse_esp(s: &str) -> Result<Self, ProposalError> {
        Self::parse(Protocol::Esp, s)
    }

    /// The default proposals for a protocol.
    pub fn default_for(protocol: Protocol) -> Self {
        let list: &[&str] = match protocol {
            Protocol::Ike => &DEFAULT_IKE,
            Protocol::Esp => &DEFAULT_ESP,
        };
        let proposals = list
            .iter()
            .filter_map(|s| CryptoProposal::parse(protocol, s).ok())
            .collect();
        Self {
            protocol,
            proposals,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The proposals in preference order.
    pub fn proposals(&self) -> &[CryptoProposal] {
        &self.proposals
    }

    /// The SA payload proposals, numbered from 1, each with `spi`.
    pub fn to_wire(&self, spi: &[u8]) -> Vec<wire::Proposal> {
        (1..=u8::MAX)
            .zip(&self.proposals)
            .map(|(n, p)| p.to_wire(n, spi))
            .collect()
    }

    /// The same proposals without key exchange methods: Child SAs created in IKE_AUTH
    /// take their keys from the IKE SA (RFC 7296 1.2), so PFS groups are not offered
    /// or required there.
    pub fn without_dh(&self) -> Self {
        let mut set = self.clone();
        for p in &mut set.proposals {
            p.dh.clear();
        }
        set
    }

    /// The group to send a KE payload for: the first one configured.
    pub fn preferred_dh(&self) -> Option<Dh> {
        self.proposals.iter().find_map(|p| p.dh.first().copied())
    }

    /// True if any proposal allows `group` (to answer INVALID_KE_PAYLOAD, RFC 7296 1.3).
    pub fn accepts_dh(&self, group: Dh) -> bool {
        self.proposals.iter().any(|p| p.dh.contains(&group))
    }
}

impl fmt::Display for ProposalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.proposals.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A peer's proposal in proposal syntax for logs, e.g. `IKE:aes128gcm16-prfsha256-x25519`;
/// unknown transforms appear as `T<type>_<id>[_<key bits>]`.
pub fn describe(p: &wire::Proposal) -> String {
    let names: Vec<String> = p
        .transforms
        .iter()
        .map(|t| {
            let known = match t.kind {
                transform::ENCR => Encr::from_transform(t).map(Encr::name),
                transform::INTEG if t.id == integ::NONE => Some("noint"),
                transform::INTEG => Integ::from_transform(t).map(Integ::name),
                transform::PRF => Prf::from_transform(t).map(Prf::name),
                transform::DH if t.id == dh::NONE => Some("nodh"),
                transform::DH => Dh::from_transform(t).map(Dh::name),
                transform::ESN => Some(if t.id == esn::YES { "esn" } else { "noesn" }),
                _ => None,
            };
            match (known, t.key_length) {
                (Some(n), _) => n.to_string(),
                (None, Some(len)) => format!("T{}_{}_{len}", t.kind, t.id),
                (None, None) => format!("T{}_{}", t.kind, t.id),
            }
        })
        .collect();
    let proto = match p.protocol {
        protocol::IKE => "IKE".to_string(),
        protocol::ESP => "ESP".to_string(),
        other => format!("PROTO{other}"),
    };
    format!("{proto}:{}", names.join("-"))
}

#[cfg(test)]
mod tests;
