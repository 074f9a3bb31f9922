//! Resource quantities (`128Mi`, `0.5`, `250m`, `1G`) as the numbers cgroups take.

/// Bytes in a memory quantity.
pub fn bytes(q: &str) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "m" => 1e-3,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    let total = (v * mult).ceil();
    if !(0.0..9.0e18).contains(&total) {
        return None;
    }
    format!("{total:.0}").parse().ok()
}

/// Millicores in a CPU quantity.
pub fn millis(q: &str) -> Option<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    let v: f64 = q.parse().ok()?;
    let m = (v * 1000.0).ceil();
    if !(0.0..9.0e15).contains(&m) {
        return None;
    }
    format!("{m:.0}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(bytes("128Mi"), Some(134_217_728));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("x"), None);
        assert_eq!(millis("250m"), Some(250));
        assert_eq!(millis("0.5"), Some(500));
        assert_eq!(millis("2"), Some(2000));
    }
}
