//! Turning a child SA that `ike` negotiated into `esp` state: the translation the
//! engine does between the two protocol cores (which never depend on each other).

use esp::{Aead, InboundSa, OutboundSa, SaConfig, SaSelectors, TrafficSelector};
use ike::endpoint::ChildSaInfo;

/// Why a negotiated child SA could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The negotiated transform has no ESP implementation here.
    #[error("unsupported ESP transform {0}")]
    UnsupportedTransform(ike::crypto::Encr),
    /// A traffic selector could not be converted.
    #[error("bad traffic selector {}: {why}", ike::ts::display(.ts))]
    Selector {
        /// The selector as ike negotiated it.
        ts: ike::wire::TrafficSelector,
        /// Why esp refused it.
        why: esp::SelectorError,
    },
    /// The esp crate refused the SA (key length, window size).
    #[error("esp refused the SA: {0}")]
    Sa(#[from] esp::SaError),
}

/// Both halves of a child SA, ready for the SAD and the outbound table.
pub struct InstalledChild {
    /// Goes into the SAD, keyed by `spi_in`.
    pub inbound: InboundSa,
    /// Used for packets the SPD maps to this child.
    pub outbound: OutboundSa,
    /// (source, destination) selector pairs for the SPD: our side to the peer's.
    pub policies: Vec<(TrafficSelector, TrafficSelector)>,
}

/// An ike selector as an esp one.
pub fn convert(ts: &ike::wire::TrafficSelector) -> Result<TrafficSelector, InstallError> {
    TrafficSelector::new(
        ts.start_addr,
        ts.end_addr,
        ts.ip_proto,
        ts.start_port,
        ts.end_port,
    )
    .map_err(|why| InstallError::Selector { ts: *ts, why })
}

/// Builds the esp SAs for a `ChildUp` event.
pub fn child_sas(info: &ChildSaInfo) -> Result<InstalledChild, InstallError> {
    let encr = info.suite.encr;
    let aead = Aead::from_transform(encr.id(), Some(encr.key_bits()))
        .ok_or(InstallError::UnsupportedTransform(encr))?;
    let config = SaConfig {
        esn: info.suite.esn,
        ..SaConfig::default()
    };
    let local: Vec<TrafficSelector> = info
        .local_ts
        .iter()
        .map(convert)
        .collect::<Result<_, _>>()?;
    let remote: Vec<TrafficSelector> = info
        .remote_ts
        .iter()
        .map(convert)
        .collect::<Result<_, _>>()?;
    let mut policies = Vec::new();
    for l in &local {
        for r in &remote {
            policies.push((*l, *r));
        }
    }
    let inbound = InboundSa::new(
        info.spi_in,
        aead,
        &info.key_in,
        &config,
        SaSelectors::new(local, remote),
    )?;
    let outbound = OutboundSa::new(info.spi_out, aead, &info.key_out, &config)?;
    Ok(InstalledChild {
        inbound,
        outbound,
        policies,
    })
}
