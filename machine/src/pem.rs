//! Minimal PEM (RFC 7468) encoding and decoding: enough to check that a certificate or key field
//! holds well-formed blocks with the expected labels, and to write keys in the textual form
//! that `openssl` and other tools read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One decoded `-----BEGIN <label>-----` … `-----END <label>-----` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Decodes every PEM block in `text`. Text outside blocks must be blank: stray text is more
/// likely a paste error than something to ignore.
pub(crate) fn decode(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim).enumerate();
    while let Some((number, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .ok_or_else(|| {
                format!(
                    "line {}: expected `-----BEGIN <label>-----`, found `{}`",
                    number + 1,
                    truncate(line)
                )
            })?;
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("PEM block `{label}` has no `{end}` line"));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block `{label}` is not valid base64: {e}"))?;
        if der.is_empty() {
            return Err(format!("PEM block `{label}` is empty"));
        }
        blocks.push(Block {
            label: label.to_owned(),
            der,
        });
    }
    if blocks.is_empty() {
        return Err("no PEM block found".to_owned());
    }
    Ok(blocks)
}

/// Encodes `der` as one PEM block with 64-character lines and a trailing newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn truncate(line: &str) -> &str {
    match line.char_indices().nth(40) {
        Some((index, _)) => &line[..index],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_long_payloads_over_several_lines() {
        let der: Vec<u8> = (0..=200u8).collect();
        let text = encode("TEST DATA", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(text.lines().count(), 2 + 268usize.div_ceil(64));
        let blocks = decode(&text).unwrap();
        assert_eq!(
            blocks,
            vec![Block {
                label: "TEST DATA".into(),
                der
            }]
        );
    }

    #[test]
    fn decodes_bundles_and_refuses_damage() {
        let two = format!(
            "{}\n{}",
            encode("CERTIFICATE", b"one"),
            encode("CERTIFICATE", b"two")
        );
        assert_eq!(decode(&two).unwrap().len(), 2);
        assert!(decode("").unwrap_err().contains("no PEM block"));
        assert!(
            decode("hello")
                .unwrap_err()
                .contains("expected `-----BEGIN")
        );
        let unterminated = "-----BEGIN KEY-----\nAAAA\n";
        assert!(
            decode(unterminated)
                .unwrap_err()
                .contains("-----END KEY-----")
        );
        let bad = "-----BEGIN KEY-----\n!!!!\n-----END KEY-----\n";
        assert!(decode(bad).unwrap_err().contains("base64"));
    }
}
