//! The protobuf wire format: keys, varints, fixed-width values and length-delimited slices,
//! read from a borrowed buffer without allocating. Every read checks bounds.

/// How a field's value is laid out on the wire. Groups (3 and 4) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Varint => "varint",
            Self::Fixed64 => "fixed64",
            Self::Len => "length-delimited",
            Self::Fixed32 => "fixed32",
        }
    }
}

/// A malformed byte sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated data")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("unsupported wire type {0}")]
    UnsupportedWireType(u64),
    #[error("invalid field number {0}")]
    InvalidFieldNumber(u64),
    #[error("{found} value where {expected} was expected")]
    WrongWireType {
        expected: &'static str,
        found: &'static str,
    },
}

/// Largest valid field number (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// A cursor over one message's bytes.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            Err(WireError::VarintTooLong)
        } else {
            Err(WireError::Truncated)
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(super) fn fixed64(&mut self) -> Result<[u8; 8], WireError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(out)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        self.take(len)
    }

    /// The next field key: (field number, wire type).
    pub(super) fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => return Err(WireError::UnsupportedWireType(other)),
        };
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD {
            return Err(WireError::InvalidFieldNumber(number));
        }
        let number = u32::try_from(number).map_err(|_| WireError::InvalidFieldNumber(number))?;
        Ok((number, wire))
    }

    /// Skip a value of an unknown field.
    pub(super) fn skip(&mut self, wire: WireType) -> Result<(), WireError> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }
}

/// Check a field's wire type.
pub(super) fn expect(found: WireType, expected: WireType) -> Result<(), WireError> {
    if found == expected {
        Ok(())
    } else {
        Err(WireError::WrongWireType {
            expected: expected.name(),
            found: found.name(),
        })
    }
}

/// A varint as a signed 64-bit value (two's complement, as int64 fields are encoded).
pub(super) fn as_i64(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// A varint as a signed 32-bit value: the low 32 bits, as Go's decoder keeps them.
pub(super) fn as_i32(v: u64) -> i32 {
    let low = v.to_le_bytes();
    i32::from_le_bytes([low[0], low[1], low[2], low[3]])
}

#[cfg(test)]
pub(super) mod encode {
    //! Minimal encoders for hand-built test input.

    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = u8::try_from(v & 0x7f).unwrap();
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
        varint((field << 3) | wire, out);
    }

    pub fn len_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        varint(u64::try_from(data.len()).unwrap(), out);
        out.extend_from_slice(data);
    }

    pub fn varint_field(field: u64, v: u64, out: &mut Vec<u8>) {
        key(field, 0, out);
        varint(v, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_including_negative_int32() {
        let mut buf = Vec::new();
        encode::varint(300, &mut buf);
        // -5 as int32 is sign-extended to 64 bits: ten bytes on the wire.
        encode::varint(u64::from_ne_bytes((-5i64).to_ne_bytes()), &mut buf);
        assert_eq!(buf.len(), 2 + 10);
        let mut r = Reader::new(&buf);
        assert_eq!(r.varint().unwrap(), 300);
        let v = r.varint().unwrap();
        assert_eq!(as_i32(v), -5);
        assert_eq!(as_i64(v), -5);
        assert!(r.is_empty());
    }

    #[test]
    fn refuses_overlong_and_truncated_varints() {
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(WireError::VarintTooLong)
        );
        assert_eq!(
            Reader::new(&[0x80, 0x80]).varint(),
            Err(WireError::Truncated)
        );
        assert_eq!(Reader::new(&[]).varint(), Err(WireError::Truncated));
    }

    #[test]
    fn length_delimited_checks_bounds() {
        let mut r = Reader::new(&[5, b'a', b'b']);
        assert_eq!(r.bytes(), Err(WireError::Truncated));
        let mut r = Reader::new(&[2, b'a', b'b', 9]);
        assert_eq!(r.bytes().unwrap(), b"ab");
        assert_eq!(r.varint().unwrap(), 9);
        // A length that does not fit in memory is truncation, not a panic.
        let mut huge = Vec::new();
        encode::varint(u64::MAX, &mut huge);
        assert_eq!(Reader::new(&huge).bytes(), Err(WireError::Truncated));
    }

    #[test]
    fn keys_refuse_groups_and_field_zero() {
        assert_eq!(
            Reader::new(&[0x0b]).key(),
            Err(WireError::UnsupportedWireType(3))
        );
        assert_eq!(
            Reader::new(&[0x02]).key(),
            Err(WireError::InvalidFieldNumber(0))
        );
        assert_eq!(Reader::new(&[0x12]).key().unwrap(), (2, WireType::Len));
    }

    #[test]
    fn skips_every_wire_type() {
        let mut buf = vec![0x96, 0x01];
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&[1, 0xaa]);
        buf.extend_from_slice(&[0; 4]);
        let mut r = Reader::new(&buf);
        for wire in [
            WireType::Varint,
            WireType::Fixed64,
            WireType::Len,
            WireType::Fixed32,
        ] {
            r.skip(wire).unwrap();
        }
        assert!(r.is_empty());
        assert_eq!(
            Reader::new(&[0; 3]).skip(WireType::Fixed32),
            Err(WireError::Truncated)
        );
    }
}
