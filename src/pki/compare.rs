//! Certificate comparison: the ways a certificate on disk differs from the [`CertSpec`] it
//! should satisfy, each as a phrase that ends up in the reissue reason.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::spec::{CertSpec, CertUsage};

/// What a PEM certificate says, one line each (subject, issuer, validity, names): what a
/// check-mode diff shows instead of base64. `None` when `pem` is not one certificate.
pub fn describe_certificate(pem: &str) -> Option<String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    if parsed.label != "CERTIFICATE" {
        return None;
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&parsed.contents).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(format!("DNS:{d}")),
                GeneralName::IPAddress(bytes) => {
                    names.extend(ip_from_bytes(bytes).map(|ip| format!("IP:{ip}")))
                }
                other => names.push(format!("{other:?}")),
            }
        }
    }
    Some(format!(
        "subject: {}\nissuer: {}\nnot before: {}\nnot after: {}\nnames: {}\nserial: {}\n",
        cert.subject(),
        cert.issuer(),
        cert.validity().not_before,
        cert.validity().not_after,
        names.join(", "),
        cert.raw_serial_as_string(),
    ))
}

/// Ways in which `cert` does not say what `spec` asks for, one phrase each.
pub(super) fn differences(cert: &X509Certificate<'_>, spec: &CertSpec) -> Vec<String> {
    let mut out = Vec::new();
    let subject = cert.subject();
    let cns: BTreeSet<String> = attr_strings(subject.iter_common_name());
    compare_sets(
        "common name",
        &cns,
        &BTreeSet::from([spec.common_name.clone()]),
        &mut out,
    );
    compare_sets(
        "organizations",
        &attr_strings(subject.iter_organization()),
        &spec.organizations.iter().cloned().collect(),
        &mut out,
    );

    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let mut other = 0;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => {
                        ips.insert(ip);
                    }
                    None => other += 1,
                },
                _ => other += 1,
            }
        }
    }
    compare_sets(
        "DNS SANs",
        &dns,
        &spec.dns_names.iter().cloned().collect(),
        &mut out,
    );
    compare_sets(
        "IP SANs",
        &ips,
        &spec.ip_addresses.iter().copied().collect(),
        &mut out,
    );
    if other > 0 {
        out.push(format!("{other} unexpected SAN entries of another type"));
    }

    let usage = match cert.extended_key_usage() {
        Ok(Some(eku)) => CertUsage::from_flags(eku.value.server_auth, eku.value.client_auth),
        _ => None,
    };
    if usage != Some(spec.usage) {
        let have = usage.map_or_else(|| "none".to_string(), |u| format!("{u:?}"));
        out.push(format!(
            "usage: certificate has {have}, spec wants {:?}",
            spec.usage
        ));
    }
    out
}

fn attr_strings<'a>(
    attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> BTreeSet<String> {
    attrs
        .map(|a| {
            a.as_str()
                .map_or_else(|_| "<non-string>".into(), str::to_string)
        })
        .collect()
}

fn compare_sets<T: Ord + fmt::Display>(
    what: &str,
    have: &BTreeSet<T>,
    want: &BTreeSet<T>,
    out: &mut Vec<String>,
) {
    let list = |items: Vec<&T>| {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<&T> = want.difference(have).collect();
    let unexpected: Vec<&T> = have.difference(want).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing [{}]", list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected [{}]", list(unexpected)));
    }
    if !parts.is_empty() {
        out.push(format!("{what}: {}", parts.join(", ")));
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}
