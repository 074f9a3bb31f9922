//! Just enough DER to give a certificate a subject rcgen cannot express.
//!
//! Kubernetes reads a client's groups from repeated Organization attributes in the subject,
//! but rcgen's `DistinguishedName` holds one value per attribute type. So a client certificate
//! is first built by rcgen with a placeholder subject, then its `TBSCertificate` gets the real
//! subject spliced in and is signed again by the same CA key.

use rcgen::SigningKey;

use crate::PkiError;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;

/// id-at-organizationName, 2.5.4.10, as DER content octets.
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
/// id-at-commonName, 2.5.4.3, as DER content octets.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// One element read from a DER buffer: its tag and where its content lies.
struct Tlv {
    tag: u8,
    header_len: usize,
    content_len: usize,
}

impl Tlv {
    fn total_len(&self) -> usize {
        self.header_len + self.content_len
    }
}

/// Reads the element at the start of `bytes` (single-byte tags, definite lengths).
fn read_tlv(bytes: &[u8]) -> Result<Tlv, PkiError> {
    let truncated = PkiError::Der("truncated element");
    let (&tag, rest) = bytes.split_first().ok_or(PkiError::Der("empty element"))?;
    let (&first, rest) = rest.split_first().ok_or(truncated)?;
    let (header_len, content_len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(PkiError::Der("unsupported length encoding"));
        }
        let len_bytes = rest.get(..n).ok_or(PkiError::Der("truncated length"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (2 + n, len)
    };
    if bytes.len() < header_len + content_len {
        return Err(PkiError::Der("element longer than its buffer"));
    }
    Ok(Tlv {
        tag,
        header_len,
        content_len,
    })
}

/// Encodes one element.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.extend(u8::try_from(len));
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        let significant = &be[skip..];
        // At most size_of::<usize>() bytes, so this always fits.
        out.extend(u8::try_from(0x80 | significant.len()));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// DER of an X.501 Name: one RDN per organization, then the common name (the order Go's
/// `pkix.Name` produces).
pub(crate) fn client_subject(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let mut pair = tlv(TAG_OID, oid);
        pair.extend(tlv(TAG_UTF8_STRING, value.as_bytes()));
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &pair))
    };
    let mut rdns = Vec::new();
    for org in organizations {
        rdns.extend(attribute(&OID_ORGANIZATION, org));
    }
    rdns.extend(attribute(&OID_COMMON_NAME, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der`, re-signed with `signer`
/// (which must be the key that signed it, so the signature algorithm stays right).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl SigningKey,
) -> Result<Vec<u8>, PkiError> {
    let cert = read_tlv(cert_der)?;
    if cert.tag != TAG_SEQUENCE {
        return Err(PkiError::Der("certificate is not a sequence"));
    }
    let body = &cert_der[cert.header_len..cert.total_len()];

    let tbs = read_tlv(body)?;
    let after_tbs = &body[tbs.total_len()..];
    let sig_alg = read_tlv(after_tbs)?;
    let sig_alg_der = &after_tbs[..sig_alg.total_len()];

    // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
    let tbs_content = &body[tbs.header_len..tbs.total_len()];
    let mut offset = 0;
    let mut index = 0;
    let subject_index = loop {
        let element = read_tlv(&tbs_content[offset..])?;
        if index == 0 && element.tag != TAG_VERSION {
            // v1 certificates omit the version; rcgen always writes v3.
            return Err(PkiError::Der("certificate has no version"));
        }
        if index == 5 {
            break element;
        }
        offset += element.total_len();
        index += 1;
    };
    let mut new_tbs_content = Vec::with_capacity(tbs_content.len() + subject_der.len());
    new_tbs_content.extend_from_slice(&tbs_content[..offset]);
    new_tbs_content.extend_from_slice(subject_der);
    new_tbs_content.extend_from_slice(&tbs_content[offset + subject_index.total_len()..]);
    let new_tbs = tlv(TAG_SEQUENCE, &new_tbs_content);

    let signature = signer.sign(&new_tbs).map_err(|source| PkiError::Generate {
        what: "certificate signature",
        source,
    })?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend(signature);

    let mut new_body = new_tbs;
    new_body.extend_from_slice(sig_alg_der);
    new_body.extend(tlv(TAG_BIT_STRING, &bits));
    Ok(tlv(TAG_SEQUENCE, &new_body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_in_short_and_long_form() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let parsed = read_tlv(&encoded).unwrap();
            assert_eq!(parsed.tag, TAG_SEQUENCE);
            assert_eq!(parsed.content_len, len);
            assert_eq!(parsed.total_len(), encoded.len());
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(read_tlv(&encoded[..3]).is_err());
        assert!(read_tlv(&[]).is_err());
        assert!(read_tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn subject_parses_back_with_every_organization() {
        let groups = vec!["system:masters".to_owned(), "dev ops".to_owned()];
        let der = client_subject("alice", &groups);
        use x509_parser::prelude::FromDer;
        let (rest, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["system:masters", "dev ops"]);
        let cn: Vec<_> = name
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
    }
}
