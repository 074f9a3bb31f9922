//! Resource quantities (`500m`, `1Gi`, `2e3`): parsing, comparison and the canonical text the
//! API server writes back.
//!
//! A quantity is held exactly as an integer count of nano-units (10^-9), which covers every
//! suffix from `n` to `Ei`; finer fractions round up to the next nano-unit, as Kubernetes does.

use std::cmp::Ordering;
use std::fmt;

/// The message real Kubernetes gives for text that is not a quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;

/// How the quantity was written, which decides how it is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, ... suffixes.
    BinarySi,
    /// `n`, `u`, `m`, ``, `k`, `M`, ... suffixes.
    DecimalSi,
    /// `e3`, `E-6` exponents.
    DecimalExponent,
}

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", QUANTITY_FORMAT_ERROR)]
pub struct QuantityError;

impl Quantity {
    /// Parse Kubernetes quantity text.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(QuantityError);
        }
        let (format, base10, base2) = parse_suffix(suffix)?;
        // digits as an integer with `frac.len()` decimal places
        let mut digits: i128 = 0;
        for c in whole.chars().chain(frac.chars()) {
            let d = i128::from(c.to_digit(10).ok_or(QuantityError)?);
            digits = digits
                .checked_mul(10)
                .and_then(|v| v.checked_add(d))
                .ok_or(QuantityError)?;
        }
        let frac_len = i32::try_from(frac.len()).map_err(|_| QuantityError)?;
        let mut value = digits.checked_mul(1i128 << base2).ok_or(QuantityError)?;
        // value * 10^(base10 + 9 - frac_len) nano-units, rounding up.
        let exp = base10 + 9 - frac_len;
        if exp >= 0 {
            let m = pow10(exp).ok_or(QuantityError)?;
            value = value.checked_mul(m).ok_or(QuantityError)?;
        } else {
            let d = pow10(-exp).ok_or(QuantityError)?;
            let q = value / d;
            value = if value % d == 0 { q } else { q + 1 };
        }
        Ok(Self {
            nanos: if negative { -value } else { value },
            format,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    pub fn format(&self) -> Format {
        self.format
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

impl fmt::Display for Quantity {
    /// The canonical form, as the API server serializes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        if self.format == Format::BinarySi
            && abs.is_multiple_of(1_000_000_000)
            && abs >= 1024 * 1_000_000_000
        {
            let mut whole = abs / 1_000_000_000;
            let mut i = 0;
            while i < 6 && whole.is_multiple_of(1024) {
                whole /= 1024;
                i += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{whole}{suffix}");
        }
        // Decimal: mantissa * 10^exp with exp a multiple of 3 in -9..=18.
        let mut mantissa = abs;
        let mut exp: i32 = -9;
        while exp < 18 && mantissa.is_multiple_of(1000) {
            mantissa /= 1000;
            exp += 3;
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{sign}{mantissa}")
            } else {
                write!(f, "{sign}{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{sign}{mantissa}{suffix}")
    }
}

fn pow10(exp: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exp).ok()?)
}

/// (format, power of ten, power of two) for a suffix.
fn parse_suffix(suffix: &str) -> Result<(Format, i32, u32), QuantityError> {
    let si = |e10| Ok((Format::DecimalSi, e10, 0));
    let bin = |e2| Ok((Format::BinarySi, 0, e2));
    match suffix {
        "" => si(0),
        "n" => si(-9),
        "u" => si(-6),
        "m" => si(-3),
        "k" => si(3),
        "M" => si(6),
        "G" => si(9),
        "T" => si(12),
        "P" => si(15),
        "E" => si(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError)?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError);
            }
            let e: i32 = rest.parse().map_err(|_| QuantityError)?;
            if !(-40..=40).contains(&e) {
                return Err(QuantityError);
            }
            Ok((Format::DecimalExponent, e, 0))
        }
    }
}

/// Canonical text for a quantity, or `None` when it does not parse.
pub fn canonical(text: &str) -> Option<String> {
    Quantity::parse(text).ok().map(|q| q.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, want) in [
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("512", "512"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("-2", "-2"),
            ("100M", "100M"),
            ("0.1m", "100u"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn rejects_garbage_and_compares_exactly() {
        for bad in ["", "abc", "1.2.3", "1Xi", "1e", ".", "--1"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        let a = Quantity::parse("1").unwrap();
        let b = Quantity::parse("1000m").unwrap();
        let c = Quantity::parse("1001m").unwrap();
        assert_eq!(a.partial_cmp(&b), Some(Ordering::Equal));
        assert!(c > a);
        assert!(Quantity::parse("1Gi").unwrap() > Quantity::parse("1G").unwrap());
        assert!(Quantity::parse("-1").unwrap().is_negative());
    }
}
