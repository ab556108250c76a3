//! Credentials: pre-shared keys looked up by identity the way strongSwan does,
//! certificate chains matched to their private keys, and the CAs that vouch for peers.

use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64ct::{Base64, Encoding};
use ike::auth::load_certs_pem;
use ike::config::{Identity, PrivateKey, TrustStore};
use ike::iana::id;
use ike::wire::Identification;
use x509_cert::der::{Decode, Encode};
use zeroize::Zeroizing;

use super::Cx;
use crate::config::{ConfigError, SecretsSection};

/// A pre-shared key, shareable between connections and wiped when the last one goes.
pub(super) type Psk = Arc<Zeroizing<Vec<u8>>>;

/// Our certificate chain and the key that signs for it.
pub(super) struct LocalCert {
    /// The end entity's subject DN: our identity unless `local.id` says otherwise.
    pub(super) subject: Identity,
    /// End entity first, DER.
    pub(super) chain: Vec<Vec<u8>>,
    /// Its private key.
    pub(super) key: Arc<PrivateKey>,
}

/// One `[secrets.ike-*]` entry, checked.
struct SharedKey {
    ids: Vec<Identity>,
    key: Psk,
}

/// The `[secrets]` of a file: pre-shared keys checked at once, private keys loaded
/// when a pubkey connection first needs them (a file of PSK connections may name key
/// files it does not use).
pub(super) struct Credentials<'a> {
    secrets: &'a SecretsSection,
    shared: Vec<SharedKey>,
    keys: Option<Vec<Arc<PrivateKey>>>,
}

impl<'a> Credentials<'a> {
    /// Checks every `[secrets.ike-*]` entry: names, ids and key encodings.
    pub(super) fn new(cx: &Cx<'_>, secrets: &'a SecretsSection) -> Result<Self, ConfigError> {
        let mut shared = Vec::new();
        for (name, s) in &secrets.ike {
            // swanctl.conf's section names say what a secret is; esprit only has these.
            if !name.starts_with("ike") {
                return Err(cx.err(
                    &format!("secrets.{name}"),
                    "pre-shared key sections are named ike<suffix> (private keys go in \
                     [secrets.private.<name>])",
                ));
            }
            let ids = s
                .id
                .iter()
                .map(|i| {
                    Identity::parse(i)
                        .map_err(|e| cx.err(&format!("secrets.{name}.id"), format!("'{i}': {e}")))
                })
                .collect::<Result<_, _>>()?;
            let key = decode_secret(&s.secret)
                .map_err(|why| cx.err(&format!("secrets.{name}.secret"), why))?;
            shared.push(SharedKey {
                ids,
                key: Arc::new(key),
            });
        }
        Ok(Credentials {
            secrets,
            shared,
            keys: None,
        })
    }

    /// The key for a connection between `local` and `remote`, as strongSwan picks it:
    /// an entry naming both ids, else the remote one, else the local one, else one that
    /// names no ids at all. Ties go to the first entry by section name.
    pub(super) fn psk(&self, local: &Identity, remote: &Identity) -> Option<Psk> {
        self.shared
            .iter()
            .filter_map(|s| {
                let names = |who: &Identity| s.ids.iter().any(|i| i.matches(who));
                let score = match (s.ids.is_empty(), names(local), names(remote)) {
                    (true, _, _) => 0,
                    (false, true, true) => 3,
                    (false, false, true) => 2,
                    (false, true, false) => 1,
                    (false, false, false) => return None,
                };
                Some((score, s))
            })
            .min_by_key(|&(score, _)| Reverse(score))
            .map(|(_, s)| s.key.clone())
    }

    /// Loads our certificate chain from `certs` (`key` names them in errors) and finds
    /// the private key whose public half the end entity carries.
    pub(super) fn local_pubkey(
        &mut self,
        cx: &Cx<'_>,
        key: &str,
        certs: &[PathBuf],
    ) -> Result<LocalCert, ConfigError> {
        let Some(first) = certs.first() else {
            return Err(cx.err(
                key,
                "auth = \"pubkey\" needs our certificate (then its chain) in certs",
            ));
        };
        let mut chain = Vec::new();
        for p in certs {
            chain.extend(read_certs(cx, key, p)?);
        }
        let first = cx.path(first);
        let ee = &chain[0];
        let subject = subject(ee).map_err(|e| cx.err(key, format!("{}: {e}", first.display())))?;
        let keys = self.keys(cx)?;
        // The certificate is parsed once, not once per key: a daemon with thousands of
        // connections, each with its own certificate and key, loads in linear time.
        let public = ike::auth::certificate_public_key(ee);
        let found = public.and_then(|p| keys.iter().find(|k| k.matches_public_key(&p)));
        let Some(k) = found else {
            return Err(cx.err(
                key,
                format!(
                    "no [secrets.private.*] key matches the certificate '{subject}' in {} \
                     ({} keys tried)",
                    first.display(),
                    keys.len()
                ),
            ));
        };
        Ok(LocalCert {
            subject,
            chain,
            key: k.clone(),
        })
    }

    /// Every `[secrets.private.*]` key, loaded on first use.
    fn keys(&mut self, cx: &Cx<'_>) -> Result<&[Arc<PrivateKey>], ConfigError> {
        if self.keys.is_none() {
            let mut keys = Vec::new();
            for (name, s) in &self.secrets.private {
                let at = format!("secrets.private.{name}.file");
                let path = cx.path(&s.file);
                let pem = Zeroizing::new(read(cx, &at, &path)?);
                let key = PrivateKey::from_pem(&pem)
                    .map_err(|e| cx.err(&at, format!("{}: {e}", path.display())))?;
                keys.push(Arc::new(key));
            }
            self.keys = Some(keys);
        }
        Ok(self.keys.as_deref().unwrap_or_default())
    }
}

/// The CAs of `cacerts` (`key` names them in errors), to verify the peer's chain.
pub(super) fn trust(
    cx: &Cx<'_>,
    key: &str,
    cacerts: &[PathBuf],
) -> Result<Arc<TrustStore>, ConfigError> {
    if cacerts.is_empty() {
        return Err(cx.err(
            key,
            "remote auth = \"pubkey\" needs cacerts: the CAs that issue the peer's certificate",
        ));
    }
    let mut store = TrustStore::default();
    for p in cacerts {
        for der in read_certs(cx, key, p)? {
            store
                .add(&der)
                .map_err(|e| cx.err(key, format!("{}: {e}", cx.path(p).display())))?;
        }
    }
    Ok(Arc::new(store))
}

/// Every certificate of a PEM file, DER.
fn read_certs(cx: &Cx<'_>, key: &str, p: &Path) -> Result<Vec<Vec<u8>>, ConfigError> {
    let path = cx.path(p);
    load_certs_pem(&read(cx, key, &path)?)
        .map_err(|e| cx.err(key, format!("{}: {e}", path.display())))
}

/// Largest certificate or key file read: a key or a chain is a few KiB, and a path
/// such as `/dev/zero` must fail instead of filling memory.
const MAX_CREDENTIAL_FILE: u64 = 1 << 20;

fn read(cx: &Cx<'_>, key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let fail = |e: String| cx.err(key, format!("{}: cannot read: {e}", path.display()));
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CREDENTIAL_FILE + 1).read_to_end(&mut data))
        .map_err(|e| fail(e.to_string()))?;
    if data.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(fail(format!("larger than {MAX_CREDENTIAL_FILE} bytes")));
    }
    Ok(data)
}

/// A certificate's subject as a DER_ASN1_DN identity.
fn subject(der: &[u8]) -> Result<Identity, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("certificate: {e}"))?;
    let data = cert
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| format!("certificate subject: {e}"))?;
    Identity::from_wire(&Identification {
        id_type: id::DER_ASN1_DN,
        data,
    })
    .map_err(|e| e.to_string())
}

/// strongSwan's secret syntax: "0x" hex, "0s" base64, anything else the text itself.
/// Errors never quote the secret.
fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = if let Some(h) = s.strip_prefix("0x") {
        Zeroizing::new(unhex(h).ok_or("the text after 0x is not pairs of hex digits")?)
    } else if let Some(b) = s.strip_prefix("0s") {
        Zeroizing::new(
            Base64::decode_vec(b).map_err(|e| format!("the text after 0s is not base64: {e}"))?,
        )
    } else {
        Zeroizing::new(s.as_bytes().to_vec())
    };
    if bytes.is_empty() {
        return Err("empty secret".into());
    }
    Ok(bytes)
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would also take a sign.
    if h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}
