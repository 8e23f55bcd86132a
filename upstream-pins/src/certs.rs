//! Local TLS material for Kanidm's loopback listener: a private CA and a leaf
//! certificate for localhost/127.0.0.1/::1. Existing files are never replaced.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509};

use crate::config::ServerFile;

type R<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn key() -> R<PKey<Private>> {
    let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
    PKey::from_ec_key(EcKey::generate(&g).map_err(e)?).map_err(e)
}

fn serial() -> R<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new().map_err(e)?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false).map_err(e)?;
    bn.to_asn1_integer().map_err(e)
}

fn name(cn: &str) -> R<openssl::x509::X509Name> {
    let mut b = X509NameBuilder::new().map_err(e)?;
    b.append_entry_by_text("O", "Kiwi ID local").map_err(e)?;
    b.append_entry_by_text("CN", cn).map_err(e)?;
    Ok(b.build())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> R<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|x| format!("{}: {}", dir.display(), x))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|x| format!("{}: {}", path.display(), x))?;
    f.write_all(data).map_err(|x| format!("{}: {}", path.display(), x))
}

/// Returns true when files were created, false when all three already existed.
pub fn generate(f: &ServerFile) -> R<bool> {
    let (ca_p, cert_p, key_p) = (f.resolve(&f.tls_ca), f.resolve(&f.tls_cert), f.resolve(&f.tls_key));
    let present = [&ca_p, &cert_p, &key_p].iter().filter(|p| p.exists()).count();
    if present == 3 {
        return Ok(false);
    }
    if present != 0 {
        return Err(format!(
            "some but not all of {}, {}, {} exist; refusing to overwrite",
            ca_p.display(),
            cert_p.display(),
            key_p.display()
        ));
    }

    let ca_key = key()?;
    let mut ca = X509::builder().map_err(e)?;
    ca.set_version(2).map_err(e)?;
    ca.set_serial_number(&serial()?).map_err(e)?;
    let ca_name = name("Kiwi ID upstream CA")?;
    ca.set_subject_name(&ca_name).map_err(e)?;
    ca.set_issuer_name(&ca_name).map_err(e)?;
    ca.set_pubkey(&ca_key).map_err(e)?;
    ca.set_not_before(&*Asn1Time::days_from_now(0).map_err(e)?).map_err(e)?;
    ca.set_not_after(&*Asn1Time::days_from_now(3650).map_err(e)?).map_err(e)?;
    ca.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build().map_err(e)?).map_err(e)?;
    ca.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().map_err(e)?).map_err(e)?;
    let ski = SubjectKeyIdentifier::new().build(&ca.x509v3_context(None, None)).map_err(e)?;
    ca.append_extension(ski).map_err(e)?;
    ca.sign(&ca_key, MessageDigest::sha256()).map_err(e)?;
    let ca = ca.build();

    let leaf_key = key()?;
    let mut leaf = X509::builder().map_err(e)?;
    leaf.set_version(2).map_err(e)?;
    leaf.set_serial_number(&serial()?).map_err(e)?;
    leaf.set_subject_name(&name("localhost")?).map_err(e)?;
    leaf.set_issuer_name(ca.subject_name()).map_err(e)?;
    leaf.set_pubkey(&leaf_key).map_err(e)?;
    leaf.set_not_before(&*Asn1Time::days_from_now(0).map_err(e)?).map_err(e)?;
    leaf.set_not_after(&*Asn1Time::days_from_now(825).map_err(e)?).map_err(e)?;
    leaf.append_extension(BasicConstraints::new().critical().build().map_err(e)?).map_err(e)?;
    leaf.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build().map_err(e)?).map_err(e)?;
    leaf.append_extension(ExtendedKeyUsage::new().server_auth().build().map_err(e)?).map_err(e)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&leaf.x509v3_context(Some(&ca), None))
        .map_err(e)?;
    leaf.append_extension(san).map_err(e)?;
    leaf.sign(&ca_key, MessageDigest::sha256()).map_err(e)?;
    let leaf = leaf.build();

    // The CA key is not kept: nothing else is ever signed with it.
    let mut chain = leaf.to_pem().map_err(e)?;
    chain.extend(ca.to_pem().map_err(e)?);
    write_new(&key_p, &leaf_key.private_key_to_pem_pkcs8().map_err(e)?, 0o600)?;
    write_new(&cert_p, &chain, 0o644)?;
    write_new(&ca_p, &ca.to_pem().map_err(e)?, 0o644)?;
    Ok(true)
}
