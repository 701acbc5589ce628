//! The device's signing identity for C2PA manifests.
//!
//! On first start a device makes its own: a one-off CA (P-256, self-signed,
//! its private key thrown away once it has signed) and an ES256 signing key
//! with an end-entity certificate from that CA, shaped as the C2PA
//! certificate profile demands (v3, AKI/SKI, digitalSignature, the
//! emailProtection and documentSigning EKUs). Files live in
//! `state_dir/provenance/`: `device-key.pem` (mode 0600), `device-chain.pem`
//! (signing certificate then CA) and `device-ca.pem`, the trust anchor to
//! hand to whoever verifies this device's images. A provisioned key and
//! chain from the config replace all of this.
//!
//! The certificates never expire (RFC 5280's 99991231235959Z): a board
//! without a real-time clock must not sign with a certificate its own clock
//! thinks is out of date.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::error::{Error, Result};
use crate::store::write_file_atomically_with_mode;

/// Folder under the state directory.
pub const DIR: &str = "provenance";
/// The signing key, PKCS#8 PEM.
pub const KEY_FILE: &str = "device-key.pem";
/// Signing certificate followed by the CA, PEM.
pub const CHAIN_FILE: &str = "device-chain.pem";
/// The CA alone: the trust anchor for this device's images.
pub const CA_FILE: &str = "device-ca.pem";

/// id-kp-emailProtection.
const EKU_EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
/// id-kp-documentSigning.
const EKU_DOCUMENT_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.36");

/// A signing key and its certificate chain, as PEM text.
#[derive(Clone)]
pub struct Identity {
    /// PKCS#8 private key.
    pub key_pem: String,
    /// Signing certificate first, then issuers.
    pub chain_pem: String,
    /// Trust anchor to add when reading this device's images, if known.
    pub anchor_pem: Option<String>,
    /// Where it came from, for logs and `inspect`.
    pub origin: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Read a provisioned key and chain (both PEM files).
    pub fn provisioned(key: &Path, chain: &Path) -> Result<Self> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        Ok(Identity {
            key_pem: read(key)?,
            chain_pem: read(chain)?,
            anchor_pem: None,
            origin: format!("provisioned {}", chain.display()),
        })
    }

    /// This device's own identity: read from `state_dir/provenance/`, or
    /// made there on first use.
    pub fn device(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join(DIR);
        let key = dir.join(KEY_FILE);
        let chain = dir.join(CHAIN_FILE);
        let ca = dir.join(CA_FILE);
        if key.is_file() && chain.is_file() {
            let mut identity = Identity::provisioned(&key, &chain)?;
            identity.anchor_pem = std::fs::read_to_string(&ca).ok();
            identity.origin = format!("device key in {}", dir.display());
            return Ok(identity);
        }
        let made = create(&device_name())?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // The chain lands last: a crash before it leaves no half identity.
        write_file_atomically_with_mode(&ca, made.ca_pem.as_bytes(), 0o644)?;
        write_file_atomically_with_mode(&key, made.key_pem.as_bytes(), 0o600)?;
        write_file_atomically_with_mode(&chain, made.chain_pem.as_bytes(), 0o644)?;
        log::info!(
            "made a C2PA signing key and certificate in {}",
            dir.display()
        );
        Ok(Identity {
            key_pem: made.key_pem,
            chain_pem: made.chain_pem,
            anchor_pem: Some(made.ca_pem),
            origin: format!("device key in {}", dir.display()),
        })
    }

    /// The files a device identity lives in.
    pub fn device_files(state_dir: &Path) -> [PathBuf; 3] {
        let dir = state_dir.join(DIR);
        [dir.join(KEY_FILE), dir.join(CHAIN_FILE), dir.join(CA_FILE)]
    }
}

/// A freshly made key, chain and CA.
struct Made {
    key_pem: String,
    chain_pem: String,
    ca_pem: String,
}

/// `Pocket Studio <first 12 hex of /etc/machine-id>`, or a random tag.
fn device_name() -> String {
    let id = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().chars().take(12).collect::<String>())
        .filter(|s| s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| hex::encode(random_bytes::<6>()));
    format!("Pocket Studio {id}")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The kernel's generator does not fail on Linux once booted; a zeroed
    // buffer would only make a weak serial, never a weak key (see below).
    let _ = getrandom::fill(&mut bytes);
    bytes
}

fn new_key() -> Result<SigningKey> {
    for _ in 0..8 {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| failed(format!("no randomness: {e}")))?;
        if let Ok(key) = SigningKey::from_slice(&seed) {
            return Ok(key);
        }
    }
    Err(failed("could not draw a P-256 key".into()))
}

fn failed(reason: String) -> Error {
    Error::Provenance(format!("device identity: {reason}"))
}

fn create(device: &str) -> Result<Made> {
    let err = |e: &dyn std::fmt::Display| failed(e.to_string());
    let ca_key = new_key()?;
    let leaf_key = new_key()?;
    let not_before = SystemTime::now()
        .checked_sub(Duration::from_secs(24 * 3600))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let validity = Validity {
        not_before: Time::try_from(not_before).map_err(|e| err(&e))?,
        not_after: Time::INFINITY,
    };
    let serial = || {
        let mut bytes = random_bytes::<16>();
        bytes[0] &= 0x7f;
        bytes[0] |= 0x01;
        SerialNumber::new(&bytes)
    };
    let ca_name =
        Name::from_str(&format!("CN={device} CA,O=Pocket Studio")).map_err(|e| err(&e))?;
    let leaf_name = Name::from_str(&format!("CN={device},O=Pocket Studio")).map_err(|e| err(&e))?;

    let spki = |key: &SigningKey| {
        SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(|e| err(&e))
    };
    let ca_cert = CertificateBuilder::new(
        Profile::Root,
        serial().map_err(|e| err(&e))?,
        validity,
        ca_name.clone(),
        spki(&ca_key)?,
        &ca_key,
    )
    .map_err(|e| err(&e))?
    .build::<DerSignature>()
    .map_err(|e| err(&e))?;

    let mut leaf = CertificateBuilder::new(
        Profile::Leaf {
            issuer: ca_name,
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        serial().map_err(|e| err(&e))?,
        validity,
        leaf_name,
        spki(&leaf_key)?,
        &ca_key,
    )
    .map_err(|e| err(&e))?;
    leaf.add_extension(&ExtendedKeyUsage(vec![
        EKU_EMAIL_PROTECTION,
        EKU_DOCUMENT_SIGNING,
    ]))
    .map_err(|e| err(&e))?;
    let leaf_cert = leaf.build::<DerSignature>().map_err(|e| err(&e))?;
    drop(ca_key);

    let ca_pem = ca_cert.to_pem(LineEnding::LF).map_err(|e| err(&e))?;
    let leaf_pem = leaf_cert.to_pem(LineEnding::LF).map_err(|e| err(&e))?;
    let key_pem = leaf_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| err(&e))?
        .to_string();
    Ok(Made {
        key_pem,
        chain_pem: format!("{leaf_pem}{ca_pem}"),
        ca_pem,
    })
}
