//! Proposal selection (RFC 7296 2.7, 3.3.6) and the negotiated suites.

use super::{esn_transform, CryptoProposal, ProposalError, ProposalSet};
use crate::crypto::{Dh, Encr, EspSuite, IkeSuite, Integ, Prf};
use crate::iana::{dh, esn, integ, transform};
use crate::wire::{self, Transform};

/// The transform meaning "none" for a type, where the type may be answered with it
/// (RFC 7296 3.3.3: integrity NONE with AEAD, DH NONE without PFS, ESN NO).
fn none_transform(kind: u8) -> Option<Transform> {
    let id = match kind {
        transform::INTEG => integ::NONE,
        transform::DH => dh::NONE,
        transform::ESN => esn::NO,
        _ => return None,
    };
    Some(Transform {
        kind,
        id,
        key_length: None,
    })
}

/// Matches our proposal against one of the peer's: per type, our most preferred
/// transform that the peer offers (the KE payload's group first, if acceptable).
/// Returns one transform per type present in the peer's proposal.
fn match_proposal(
    ours: &CryptoProposal,
    theirs: &wire::Proposal,
    ke_group: Option<u16>,
) -> Option<Vec<Transform>> {
    if theirs.protocol != ours.protocol.id() {
        return None;
    }
    let types = ours.protocol.transform_types();
    // RFC 7296 3.3.6: a proposal with a transform type we do not understand is
    // unacceptable as a whole.
    if theirs.transforms.iter().any(|t| !types.contains(&t.kind)) {
        return None;
    }
    let mut chosen = Vec::with_capacity(types.len());
    for &kind in types {
        let mine = ours.candidates(kind);
        let none = none_transform(kind);
        let offers = |t: &Transform| theirs.transforms.contains(t);
        if !theirs.transforms.iter().any(|t| t.kind == kind) {
            // A missing type is "none" (a missing ESN means no ESN): fine unless we
            // require a real algorithm of it.
            if mine.is_empty() || none.is_some_and(|n| mine.contains(&n)) {
                continue;
            }
            return None;
        }
        let acceptable = if mine.is_empty() {
            none.into_iter().collect()
        } else {
            mine
        };
        let preferred = ke_group
            .filter(|_| kind == transform::DH)
            .and_then(|g| acceptable.iter().find(|t| t.id == g && offers(t)));
        let pick = preferred.or_else(|| acceptable.iter().find(|t| offers(t)))?;
        chosen.push(*pick);
    }
    Some(chosen)
}

impl IkeSuite {
    /// The suite from one transform per type; `None` if incomplete or inconsistent.
    pub fn from_transforms(ts: &[Transform]) -> Option<Self> {
        let encr = ts.iter().find_map(Encr::from_transform)?;
        let integ = ts.iter().find_map(Integ::from_transform);
        let suite = IkeSuite {
            encr,
            integ,
            prf: ts.iter().find_map(Prf::from_transform)?,
            dh: ts.iter().find_map(Dh::from_transform)?,
        };
        (encr.is_aead() != integ.is_some()).then_some(suite)
    }

    /// The transforms, for an SA payload.
    pub fn transforms(&self) -> Vec<Transform> {
        let mut v = vec![self.encr.transform()];
        v.extend(self.integ.map(Integ::transform));
        v.extend([self.prf.transform(), self.dh.transform()]);
        v
    }
}

impl EspSuite {
    /// The suite from one transform per type; `None` if incomplete: a CBC cipher
    /// needs an integrity algorithm, an AEAD cipher takes none.
    pub fn from_transforms(ts: &[Transform]) -> Option<Self> {
        let encr = ts.iter().find_map(Encr::from_transform)?;
        let integ = ts.iter().find_map(Integ::from_transform);
        let other_integ = ts
            .iter()
            .any(|t| t.kind == transform::INTEG && t.id != integ::NONE && integ.is_none());
        if other_integ || encr.is_aead() == integ.is_some() {
            return None;
        }
        Some(EspSuite {
            encr,
            integ,
            dh: ts.iter().find_map(Dh::from_transform),
            esn: ts.iter().any(|t| *t == esn_transform(true)),
        })
    }

    /// The transforms, for an SA payload.
    pub fn transforms(&self) -> Vec<Transform> {
        let mut v = vec![self.encr.transform()];
        v.extend(self.integ.map(Integ::transform));
        v.extend(self.dh.map(Dh::transform));
        v.push(esn_transform(self.esn));
        v
    }
}

/// A responder's choice: the suite and what to echo in its SA payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected<S> {
    /// The negotiated suite.
    pub suite: S,
    /// The peer's proposal number, echoed in the reply (RFC 7296 3.3.1).
    pub number: u8,
    /// Protocol ID of the chosen proposal.
    pub protocol: u8,
    /// The peer's SPI from the chosen proposal (empty in IKE_SA_INIT).
    pub peer_spi: Vec<u8>,
    /// Exactly one transform per type the peer's proposal carried.
    pub transforms: Vec<Transform>,
}

impl<S> Selected<S> {
    /// The single proposal for our reply's SA payload, carrying our own `spi`.
    pub fn reply(&self, spi: &[u8]) -> wire::Proposal {
        wire::Proposal {
            number: self.number,
            protocol: self.protocol,
            spi: spi.to_vec(),
            transforms: self.transforms.clone(),
        }
    }
}

impl ProposalSet {
    /// Responder: picks from the peer's proposals. `ke_group` is the group of the
    /// peer's KE payload, preferred when the chosen proposals allow it.
    fn select(&self, offered: &[wire::Proposal], ke_group: Option<u16>) -> Option<Selected<()>> {
        self.proposals.iter().find_map(|ours| {
            offered.iter().find_map(|theirs| {
                let transforms = match_proposal(ours, theirs, ke_group)?;
                Some(Selected {
                    suite: (),
                    number: theirs.number,
                    protocol: theirs.protocol,
                    peer_spi: theirs.spi.clone(),
                    transforms,
                })
            })
        })
    }

    /// Responder: selects an IKE suite from the peer's SA payload.
    pub fn select_ike(
        &self,
        offered: &[wire::Proposal],
        ke_group: Option<u16>,
    ) -> Result<Selected<IkeSuite>, ProposalError> {
        let s = self
            .select(offered, ke_group)
            .ok_or(ProposalError::NoProposalChosen)?;
        let suite =
            IkeSuite::from_transforms(&s.transforms).ok_or(ProposalError::NoProposalChosen)?;
        Ok(with_suite(s, suite))
    }

    /// Responder: selects an ESP suite from the peer's SA payload.
    pub fn select_esp(
        &self,
        offered: &[wire::Proposal],
        ke_group: Option<u16>,
    ) -> Result<Selected<EspSuite>, ProposalError> {
        let s = self
            .select(offered, ke_group)
            .ok_or(ProposalError::NoProposalChosen)?;
        let suite =
            EspSuite::from_transforms(&s.transforms).ok_or(ProposalError::NoProposalChosen)?;
        Ok(with_suite(s, suite))
    }

    /// Initiator: checks that the responder's single proposal picks, from the proposal
    /// of that number we sent, exactly one offered transform per type (RFC 7296 3.3.6).
    fn check_reply(&self, reply: &wire::Proposal) -> Result<Vec<Transform>, ProposalError> {
        let ours = usize::from(reply.number)
            .checked_sub(1)
            .and_then(|i| self.proposals.get(i))
            .ok_or(ProposalError::InvalidReply("unknown proposal number"))?;
        if reply.protocol != self.protocol.id() {
            return Err(ProposalError::InvalidReply("wrong protocol"));
        }
        for (i, t) in reply.transforms.iter().enumerate() {
            if reply.transforms[..i].iter().any(|u| u.kind == t.kind) {
                return Err(ProposalError::InvalidReply(
                    "more than one transform of a type",
                ));
            }
        }
        match_proposal(ours, reply, None)
            .ok_or(ProposalError::InvalidReply("transform not offered"))
    }

    /// Initiator: the IKE suite a responder chose, if it is one we offered.
    pub fn check_ike_reply(&self, reply: &wire::Proposal) -> Result<IkeSuite, ProposalError> {
        IkeSuite::from_transforms(&self.check_reply(reply)?)
            .ok_or(ProposalError::InvalidReply("incomplete suite"))
    }

    /// Initiator: the ESP suite a responder chose, if it is one we offered.
    pub fn check_esp_reply(&self, reply: &wire::Proposal) -> Result<EspSuite, ProposalError> {
        EspSuite::from_transforms(&self.check_reply(reply)?)
            .ok_or(ProposalError::InvalidReply("incomplete suite"))
    }
}

fn with_suite<S>(s: Selected<()>, suite: S) -> Selected<S> {
    Selected {
        suite,
        number: s.number,
        protocol: s.protocol,
        peer_spi: s.peer_spi,
        transforms: s.transforms,
    }
}
