//! Turning a child SA that `ike` negotiated into `esp` state: the translation the
//! engine does between the two protocol cores (which never depend on each other).

use esp::{Algorithm, InboundSa, OutboundSa, SaConfig, SaSelectors, TrafficSelector};
use ike::endpoint::ChildSaInfo;

/// Why a negotiated child SA could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The negotiated transforms have no ESP implementation here (AES-XCBC integrity).
    #[error("unsupported ESP transforms {0}")]
    UnsupportedTransform(ike::crypto::EspSuite),
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

/// The esp algorithm for a negotiated suite, matched by IKEv2 transform IDs (the two
/// crates share no types): AES-GCM-16 with its key length, or AES-CBC with its key
/// length and an HMAC. `ChildSaInfo::key_in/key_out` are laid out as esp expects
/// (encryption key, then salt or integrity key, RFC 7296 2.17).
pub fn algorithm(suite: &ike::crypto::EspSuite) -> Result<Algorithm, InstallError> {
    Algorithm::from_transform(
        suite.encr.id(),
        Some(suite.encr.key_bits()),
        suite.integ.map(ike::crypto::Integ::id),
    )
    .ok_or(InstallError::UnsupportedTransform(*suite))
}

/// Builds the esp SAs for a `ChildUp` event.
pub fn child_sas(info: &ChildSaInfo) -> Result<InstalledChild, InstallError> {
    let algorithm = algorithm(&info.suite)?;
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
        algorithm,
        &info.key_in,
        &config,
        SaSelectors::new(local, remote),
    )?;
    let outbound = OutboundSa::new(info.spi_out, algorithm, &info.key_out, &config)?;
    Ok(InstalledChild {
        inbound,
        outbound,
        policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::{Aead, AesCbc, Integ};
    use ike::crypto::{Encr, EspSuite};

    fn suite(encr: Encr, integ: Option<ike::crypto::Integ>) -> EspSuite {
        EspSuite {
            encr,
            integ,
            dh: None,
            esn: false,
        }
    }

    #[test]
    fn every_negotiable_suite_maps_with_matching_keymat_length() {
        let mut mapped = 0;
        for encr in Encr::ALL {
            for integ in std::iter::once(None).chain(ike::crypto::Integ::ALL.map(Some)) {
                let s = suite(encr, integ);
                // What ike derives per direction (RFC 7296 2.17) is what esp takes.
                let ike_len = encr.key_len() + integ.map_or(0, ike::crypto::Integ::key_len);
                match algorithm(&s) {
                    Ok(alg) => {
                        assert_eq!(alg.keymat_len(), ike_len, "{s}");
                        mapped += 1;
                    }
                    Err(e) => assert_eq!(e, InstallError::UnsupportedTransform(s)),
                }
            }
        }
        // 3 GCM key sizes without integrity, 3 CBC key sizes x 4 HMACs.
        assert_eq!(mapped, 3 + 3 * 4);
    }

    #[test]
    fn suites_map_to_the_esp_algorithms() {
        use ike::crypto::Integ as I;
        let cases = [
            (
                suite(Encr::AesGcm16_128, None),
                Some(Algorithm::Aead(Aead::AesGcm128)),
            ),
            (
                suite(Encr::AesGcm16_256, None),
                Some(Algorithm::Aead(Aead::AesGcm256)),
            ),
            (
                suite(Encr::AesGcm16_192, None),
                Some(Algorithm::Aead(Aead::AesGcm192)),
            ),
            (
                suite(Encr::AesCbc128, Some(I::HmacSha256_128)),
                Some(Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha256_128)),
            ),
            (
                suite(Encr::AesCbc192, Some(I::HmacSha384_192)),
                Some(Algorithm::AesCbc(AesCbc::Aes192, Integ::HmacSha384_192)),
            ),
            (
                suite(Encr::AesCbc256, Some(I::HmacSha1_96)),
                Some(Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha1_96)),
            ),
            (
                suite(Encr::AesCbc256, Some(I::HmacSha512_256)),
                Some(Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha512_256)),
            ),
            // esp has no AES-XCBC, and CBC without integrity is no ESP suite here.
            (suite(Encr::AesCbc128, Some(I::AesXcbc96)), None),
            (suite(Encr::AesCbc128, None), None),
            (suite(Encr::AesGcm16_128, Some(I::HmacSha256_128)), None),
        ];
        for (s, want) in cases {
            assert_eq!(algorithm(&s).ok(), want, "{s}");
        }
        let err = algorithm(&suite(Encr::AesCbc128, Some(I::AesXcbc96))).unwrap_err();
        assert!(err.to_string().contains("aes128"), "{err}");
    }
}
