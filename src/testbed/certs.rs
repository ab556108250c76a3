//! A throw-away PKI: a CA and end-entity certificates made on the fly with rcgen.
//!
//! Names follow the FabEdge deployments esprit meets: `C=CN, O=Local Cluster, CN=<cn>`,
//! attributes in that order and encoded as strongSwan's `pki --dn` does (PrintableString
//! where the text allows), so DN identities written in swanctl.conf style match.
//! ECDSA P-256 keys come from ring; ring cannot generate RSA keys, so for
//! [`KeyKind::Rsa2048`] `openssl genpkey` makes the key and rcgen (ring) signs with it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, DnValue, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};

use super::netns::run_checked;

/// The CA's common name.
pub const CA_CN: &str = "esprit CA";

/// The key type of a [`Pki`], used for the CA and every certificate it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (RFC 7427 signatures, IKE auth method 14).
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256; the key comes from `openssl genpkey`.
    Rsa2048,
}

/// A self-signed CA, "C=CN, O=Local Cluster, CN=esprit CA", that issues [`Leaf`]s.
pub struct Pki {
    kind: KeyKind,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// An end-entity certificate and its private key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The subject, `C=CN, O=Local Cluster, CN=<cn>` (strongSwan's notation).
    pub dn: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM ("BEGIN PRIVATE KEY").
    pub key_pem: String,
}

/// The subject DN the test PKI gives `cn`, in strongSwan's notation.
pub fn subject_dn(cn: &str) -> String {
    format!("C=CN, O=Local Cluster, CN={cn}")
}

impl Pki {
    /// Makes a CA with a fresh key of `kind`.
    pub fn new(kind: KeyKind) -> io::Result<Pki> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(CA_CN);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, new_key(kind)?).map_err(rcgen_error)?;
        Ok(Pki { kind, ca })
    }

    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        self.ca.der()
    }

    /// Issues a certificate for "C=CN, O=Local Cluster, CN=`cn`" with the DNS name
    /// `san_dns` as subject alternative name, and a fresh key of the CA's kind.
    pub fn issue(&self, cn: &str, san_dns: &str) -> io::Result<Leaf> {
        let key = new_key(self.kind)?;
        let mut params = CertificateParams::new(vec![san_dns.to_string()]).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).map_err(rcgen_error)?;
        Ok(Leaf {
            dn: subject_dn(cn),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `dir/ca.pem` and returns its path.
    pub fn write_ca(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("ca.pem");
        fs::write(&path, self.ca_pem())?;
        Ok(path)
    }
}

impl Leaf {
    /// Writes `dir/STEM.pem` (certificate) and `dir/STEM-key.pem` (key); returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> io::Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        fs::write(&cert, &self.cert_pem)?;
        fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// C, O, CN in this order; PrintableString where possible, like strongSwan's `pki`.
fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in [
        (DnType::CountryName, "CN"),
        (DnType::OrganizationName, "Local Cluster"),
        (DnType::CommonName, cn),
    ] {
        let value = PrintableString::try_from(value)
            .map(DnValue::PrintableString)
            .unwrap_or_else(|_| DnValue::Utf8String(value.to_string()));
        dn.push(ty, value);
    }
    dn
}

fn new_key(kind: KeyKind) -> io::Result<KeyPair> {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error),
        KeyKind::Rsa2048 => {
            let out = run_checked(Command::new("openssl").args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]))?;
            let pem = String::from_utf8_lossy(&out.stdout);
            KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256).map_err(rcgen_error)
        }
    }
}

fn rcgen_error(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("rcgen: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::der::Decode;
    use x509_cert::Certificate;

    /// The subject in strongSwan's notation: RDNs in certificate order, ", " between.
    fn strongswan_dn(name: &x509_cert::name::Name) -> String {
        name.0
            .iter()
            .map(|rdn| rdn.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check(kind: KeyKind) {
        let pki = Pki::new(kind).unwrap();
        let leaf = pki.issue("edge1", "edge1").unwrap();
        let cert = Certificate::from_der(&leaf.cert_der).unwrap();
        let tbs = &cert.tbs_certificate;
        assert_eq!(
            strongswan_dn(&tbs.subject),
            "C=CN, O=Local Cluster, CN=edge1"
        );
        assert_eq!(strongswan_dn(&tbs.subject), leaf.dn);
        // RFC 4514 prints the RDNs in reverse.
        assert_eq!(tbs.subject.to_string(), "CN=edge1,O=Local Cluster,C=CN");
        assert_eq!(
            strongswan_dn(&tbs.issuer),
            "C=CN, O=Local Cluster, CN=esprit CA"
        );
        let ca = Certificate::from_der(pki.ca_der()).unwrap();
        assert_eq!(ca.tbs_certificate.subject, tbs.issuer);
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let dir = super::super::Scratch::new("esprit-certs-test").unwrap();
        let (c, k) = leaf.write(dir.path(), "edge1").unwrap();
        assert_eq!(c, dir.join("edge1.pem"));
        assert_eq!(k, dir.join("edge1-key.pem"));
        assert_eq!(pki.write_ca(dir.path()).unwrap(), dir.join("ca.pem"));
        // openssl reads the PEM files, agrees that the chain holds, that the PEM holds
        // the DER we parsed, and that the key belongs to the certificate.
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.pem"))
            .arg(&c)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{verify:?}");
        let openssl = |args: &[&str], file: &Path| {
            let out = Command::new("openssl")
                .args(args)
                .arg(file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            out.stdout
        };
        assert_eq!(
            openssl(&["x509", "-outform", "der", "-in"], &c),
            leaf.cert_der
        );
        assert_eq!(
            openssl(&["x509", "-noout", "-pubkey", "-in"], &c),
            openssl(&["pkey", "-pubout", "-in"], &k)
        );
    }

    #[test]
    fn esprit_ike_takes_the_chain_the_key_and_the_identities() {
        use ike::auth::{Identity, PrivateKey, TrustStore};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let pki = Pki::new(kind).unwrap();
            let leaf = pki.issue("edge1", "edge1.example").unwrap();
            let key = PrivateKey::from_pem(leaf.key_pem.as_bytes()).unwrap();
            assert!(key.matches_certificate(&leaf.cert_der), "{kind:?}");
            let store = TrustStore::from_pem(pki.ca_pem().as_bytes()).unwrap();
            let peer = store.verify_chain(&leaf.cert_der, &[], now).unwrap();
            for id in [leaf.dn.as_str(), "edge1.example"] {
                assert!(
                    peer.matches_id(&Identity::parse(id).unwrap()),
                    "{kind:?} {id}"
                );
            }
            assert!(!peer.matches_id(&Identity::parse(&subject_dn("edge2")).unwrap()));
        }
    }

    #[test]
    fn ecdsa_leaf_has_the_subject_in_c_o_cn_order() {
        check(KeyKind::EcdsaP256);
    }

    #[test]
    fn rsa_leaf_has_the_subject_in_c_o_cn_order() {
        check(KeyKind::Rsa2048);
    }
}
