//! Certificates for the matrix, made with strongSwan's own `pki` tool as the issue asks:
//! an ECDSA P-256 CA, an RSA 2048 CA, and for IKE fragmentation an RSA 4096 root with an
//! RSA 4096 intermediate, each issuing a certificate for esprit (CN=edge1) and for charon
//! (CN=edge2) with DN identities "C=CN, O=Local Cluster, CN=...".

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

/// One side's credentials.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The subject DN, which is also the IKE identity.
    pub dn: String,
    /// The end-entity certificate alone (PEM).
    pub cert: PathBuf,
    /// The certificate followed by the intermediate CAs (PEM): what the side sends.
    pub chain: PathBuf,
    /// The private key as `pki` writes it (PKCS#1 or SEC1 PEM).
    pub key: PathBuf,
}

/// A CA (with its intermediates, if any) and the two leaves it issued.
#[derive(Debug, Clone)]
pub struct Set {
    /// The root CA certificate: the only trust anchor each side is given.
    pub root: PathBuf,
    /// Intermediate CA certificates, root's child first.
    pub intermediates: Vec<PathBuf>,
    /// esprit's certificate.
    pub esprit: Leaf,
    /// charon's certificate.
    pub charon: Leaf,
}

/// Every certificate set of the matrix.
#[derive(Debug, Clone)]
pub struct Certs {
    /// ECDSA P-256 throughout.
    pub ecdsa: Set,
    /// RSA 2048 throughout.
    pub rsa: Set,
    /// RSA 4096 root, intermediate and leaves: IKE_AUTH carries about 3.5 kB.
    pub rsa_chain: Set,
    /// ECDSA P-384 throughout (issue 21: remote sites' certificates).
    pub ecdsa384: Set,
    /// ECDSA P-521 throughout.
    pub ecdsa521: Set,
}

/// The identity DN `pki` gives `cn`.
pub fn dn(cn: &str) -> String {
    format!("C=CN, O=Local Cluster, CN={cn}")
}

/// Runs `pki ARGS`, feeding `stdin`; returns stdout.
fn pki(conf: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut child = Command::new("pki")
        .args(args)
        .env("STRONGSWAN_CONF", conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("pki: {e} (strongswan-pki installed?)"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .ok_or("pki: no stdin")?
            .write_all(input)
            .map_err(|e| format!("pki: {e}"))?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| format!("pki: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "pki {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Maker<'a> {
    dir: &'a Path,
    conf: PathBuf,
}

impl Maker<'_> {
    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf, String> {
        let p = self.dir.join(name);
        fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }

    /// A fresh key of `kind` (`pki --type`) and `bits`, written to `name`.
    fn key(&self, name: &str, kind: &str, bits: &str) -> Result<PathBuf, String> {
        let pem = pki(
            &self.conf,
            &["--gen", "--type", kind, "--size", bits, "--outform", "pem"],
            None,
        )?;
        self.write(name, &pem)
    }

    fn self_signed(&self, stem: &str, kind: &str, key: PathBuf) -> Result<Issuer, String> {
        let cn = dn(&format!("esprit interop {stem}"));
        let k = key.to_string_lossy().into_owned();
        let pem = pki(
            &self.conf,
            &[
                "--self",
                "--ca",
                "--in",
                &k,
                "--type",
                kind,
                "--dn",
                &cn,
                "--lifetime",
                "30",
                "--outform",
                "pem",
            ],
            None,
        )?;
        let cert = self.write(&format!("{stem}.pem"), &pem)?;
        Ok(Issuer { cert, key })
    }

    /// A certificate for `cn` (a CA if `ca`) on `key`, signed by `by`.
    fn issue(
        &self,
        stem: &str,
        cn: &str,
        ca: bool,
        (kind, key): (&str, PathBuf),
        by: &Issuer,
    ) -> Result<Issuer, String> {
        let k = key.to_string_lossy().into_owned();
        let public = pki(&self.conf, &["--pub", "--in", &k, "--type", kind], None)?;
        let (ca_cert, ca_key) = (by.cert.to_string_lossy(), by.key.to_string_lossy());
        let subject = dn(cn);
        let mut args = vec![
            "--issue",
            "--cacert",
            &ca_cert,
            "--cakey",
            &ca_key,
            "--dn",
            &subject,
            "--lifetime",
            "30",
            "--outform",
            "pem",
        ];
        if ca {
            args.push("--ca");
        } else {
            args.extend(["--san", cn]);
        }
        let pem = pki(&self.conf, &args, Some(&public))?;
        let cert = self.write(&format!("{stem}.pem"), &pem)?;
        Ok(Issuer { cert, key })
    }

    /// A root (plus `levels` intermediates) issuing edge1 and edge2.
    fn set(&self, stem: &str, kind: &str, bits: &str, levels: usize) -> Result<Set, String> {
        // Every key at once: RSA 4096 generation is most of the time spent here.
        let mut names = vec![format!("{stem}-root")];
        names.extend((0..levels).map(|i| format!("{stem}-int{i}")));
        names.extend(["edge1", "edge2"].map(|cn| format!("{stem}-{cn}")));
        let mut keys = thread::scope(|s| {
            let jobs: Vec<_> = names
                .iter()
                .map(|n| s.spawn(move || self.key(&format!("{n}.key"), kind, bits)))
                .collect();
            jobs.into_iter()
                .map(|j| j.join().expect("key generation"))
                .collect::<Result<Vec<_>, _>>()
        })?
        .into_iter();
        let mut key = || keys.next().expect("one key per name");
        let root = self.self_signed(&names[0], kind, key())?;
        let mut issuer = root.clone();
        let mut intermediates = Vec::new();
        for name in &names[1..=levels] {
            let cn = format!("esprit interop {name}");
            issuer = self.issue(name, &cn, true, (kind, key()), &issuer)?;
            intermediates.push(issuer.cert.clone());
        }
        let mut leaf = |cn: &str| -> Result<Leaf, String> {
            let l = self.issue(&format!("{stem}-{cn}"), cn, false, (kind, key()), &issuer)?;
            let mut chain = fs::read(&l.cert).map_err(|e| e.to_string())?;
            for i in intermediates.iter().rev() {
                chain.extend(fs::read(i).map_err(|e| e.to_string())?);
            }
            Ok(Leaf {
                dn: dn(cn),
                chain: self.write(&format!("{stem}-{cn}-chain.pem"), &chain)?,
                cert: l.cert,
                key: l.key,
            })
        };
        Ok(Set {
            esprit: leaf("edge1")?,
            charon: leaf("edge2")?,
            root: root.cert,
            intermediates,
        })
    }
}

#[derive(Clone)]
struct Issuer {
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    /// Makes every set in `dir`.
    pub fn make(dir: &Path) -> Result<Certs, String> {
        let conf = dir.join("pki.conf");
        // A minimal plugin list, or pki warns about a missing TPM (TESTING.md).
        fs::write(
            &conf,
            "pki {\n    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey\n}\n",
        )
        .map_err(|e| e.to_string())?;
        let m = Maker { dir, conf };
        let m = &m;
        let (ecdsa, rsa, rsa_chain, ecdsa384, ecdsa521) = thread::scope(|s| {
            let ecdsa = s.spawn(|| m.set("ecdsa", "ecdsa", "256", 0));
            let rsa = s.spawn(|| m.set("rsa", "rsa", "2048", 0));
            let e384 = s.spawn(|| m.set("ecdsa384", "ecdsa", "384", 0));
            let e521 = s.spawn(|| m.set("ecdsa521", "ecdsa", "521", 0));
            let chain = m.set("rsa4096", "rsa", "4096", 1);
            let join = |h: thread::ScopedJoinHandle<'_, _>| h.join().expect("certificate set");
            (join(ecdsa), join(rsa), chain, join(e384), join(e521))
        });
        Ok(Certs {
            ecdsa: ecdsa?,
            rsa: rsa?,
            rsa_chain: rsa_chain?,
            ecdsa384: ecdsa384?,
            ecdsa521: ecdsa521?,
        })
    }
}
