//! Walks an encoded message along the schema table and builds its JSON object, shaping
//! values the way the Go types marshal them to JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::ProtobufError;
use super::schema::{Cardinality, Field, Message, Schema, Type};
use super::values;
use super::wire::{self, Reader, WireError, WireType};

/// Deepest message nesting accepted; real objects stay far below it.
pub(super) const MAX_DEPTH: usize = 64;

enum Segment<'s> {
    Field(&'s str),
    Index(usize),
    Key(String),
}

/// Decoding state: the schema and where in the object we are, for error messages.
pub(super) struct Walker<'s> {
    schema: &'s Schema,
    path: Vec<Segment<'s>>,
}

impl<'s> Walker<'s> {
    pub(super) fn new(schema: &'s Schema) -> Self {
        Self {
            schema,
            path: Vec::new(),
        }
    }

    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
            }
        }
        if out.is_empty() {
            out.push_str("(root)");
        }
        out
    }

    fn wire_error(&self, source: WireError) -> ProtobufError {
        ProtobufError::Wire {
            path: self.path(),
            source,
        }
    }

    fn value_error(&self, reason: impl Into<String>) -> ProtobufError {
        ProtobufError::Value {
            path: self.path(),
            reason: reason.into(),
        }
    }

    /// Decode `bytes` as `msg`, adding its fields to `out` (merging into what is there, as
    /// protobuf does when a message field occurs twice).
    pub(super) fn message(
        &mut self,
        bytes: &[u8],
        msg: &'s Message,
        out: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep {
                path: self.path(),
                limit: MAX_DEPTH,
            });
        }
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (number, wire) = r.key().map_err(|e| self.wire_error(e))?;
            let Some(field) = msg.field(number) else {
                r.skip(wire).map_err(|e| self.wire_error(e))?;
                continue;
            };
            self.path.push(Segment::Field(&field.json_name));
            self.field(&mut r, wire, field, out, depth)?;
            self.path.pop();
        }
        Ok(())
    }

    fn field(
        &mut self,
        r: &mut Reader<'_>,
        wire: WireType,
        field: &'s Field,
        out: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), ProtobufError> {
        let name = field.json_name.as_str();
        match field.cardinality {
            Cardinality::Single => match field.ty {
                Type::Message(m) => {
                    let bytes = self.len(r, wire)?;
                    let msg = &self.schema.messages[m];
                    if field.inline {
                        return self.message(bytes, msg, out, depth + 1);
                    }
                    let slot = out
                        .entry(name)
                        .and_modify(|v| {
                            if !v.is_object() {
                                *v = Value::Object(Map::new());
                            }
                        })
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(map) = slot {
                        self.message(bytes, msg, map, depth + 1)?;
                    }
                }
                ty => {
                    let v = self.value(r, wire, ty, depth)?;
                    if field.omit_zero && is_zero(&v) {
                        out.remove(name);
                    } else {
                        out.insert(name.to_string(), v);
                    }
                }
            },
            Cardinality::Repeated => {
                let mut items = match out.remove(name) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                let result = self.repeated(r, wire, field.ty, &mut items, depth);
                out.insert(name.to_string(), Value::Array(items));
                result?;
            }
            Cardinality::Map => {
                let bytes = self.len(r, wire)?;
                let (key, value) = self.map_entry(bytes, field.ty, depth)?;
                let slot = out
                    .entry(name)
                    .and_modify(|v| {
                        if !v.is_object() {
                            *v = Value::Object(Map::new());
                        }
                    })
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = slot {
                    map.insert(key, value);
                }
            }
        }
        Ok(())
    }

    fn repeated(
        &mut self,
        r: &mut Reader<'_>,
        wire: WireType,
        ty: Type,
        items: &mut Vec<Value>,
        depth: usize,
    ) -> Result<(), ProtobufError> {
        let packed_wire = match ty {
            Type::Bool | Type::Int32 | Type::Int64 => Some(WireType::Varint),
            Type::Double => Some(WireType::Fixed64),
            _ => None,
        };
        match packed_wire {
            Some(element) if wire == WireType::Len => {
                let bytes = self.len(r, wire)?;
                let mut packed = Reader::new(bytes);
                while !packed.is_empty() {
                    self.path.push(Segment::Index(items.len()));
                    let v = self.value(&mut packed, element, ty, depth)?;
                    self.path.pop();
                    items.push(v);
                }
            }
            _ => {
                self.path.push(Segment::Index(items.len()));
                let v = self.value(r, wire, ty, depth)?;
                self.path.pop();
                items.push(v);
            }
        }
        Ok(())
    }

    /// One `map<string, T>` entry: key = 1, value = 2; a missing value is T's zero value.
    fn map_entry(
        &mut self,
        bytes: &[u8],
        ty: Type,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let mut r = Reader::new(bytes);
        let mut key = String::new();
        let mut value: Option<(WireType, Reader<'_>)> = None;
        while !r.is_empty() {
            let (number, wire) = r.key().map_err(|e| self.wire_error(e))?;
            match number {
                1 => key = lossy(self.len(&mut r, wire)?),
                // Decoded once the key is known, so errors can name it.
                2 => value = Some((wire, r.clone())),
                _ => {}
            }
            if number != 1 {
                r.skip(wire).map_err(|e| self.wire_error(e))?;
            }
        }
        self.path.push(Segment::Key(key.clone()));
        let value = match value {
            Some((wire, mut at)) => self.value(&mut at, wire, ty, depth + 1)?,
            None => zero_value(ty),
        };
        self.path.pop();
        Ok((key, value))
    }

    fn len<'b>(&self, r: &mut Reader<'b>, wire: WireType) -> Result<&'b [u8], ProtobufError> {
        wire::expect(wire, WireType::Len).map_err(|e| self.wire_error(e))?;
        r.bytes().map_err(|e| self.wire_error(e))
    }

    fn varint(&self, r: &mut Reader<'_>, wire: WireType) -> Result<u64, ProtobufError> {
        wire::expect(wire, WireType::Varint).map_err(|e| self.wire_error(e))?;
        r.varint().map_err(|e| self.wire_error(e))
    }

    /// One value of type `ty` (not a repeated or map container).
    fn value(
        &mut self,
        r: &mut Reader<'_>,
        wire: WireType,
        ty: Type,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        Ok(match ty {
            Type::String => Value::String(lossy(self.len(r, wire)?)),
            Type::Bool => Value::Bool(self.varint(r, wire)? != 0),
            Type::Int32 => Value::from(wire::as_i32(self.varint(r, wire)?)),
            Type::Int64 => Value::from(wire::as_i64(self.varint(r, wire)?)),
            Type::Double => {
                wire::expect(wire, WireType::Fixed64).map_err(|e| self.wire_error(e))?;
                let bits = r.fixed64().map_err(|e| self.wire_error(e))?;
                let n = Number::from_f64(f64::from_le_bytes(bits))
                    .ok_or_else(|| self.value_error("not a finite number"))?;
                Value::Number(n)
            }
            Type::Bytes => Value::String(BASE64.encode(self.len(r, wire)?)),
            Type::Message(m) => {
                let bytes = self.len(r, wire)?;
                let mut map = Map::new();
                self.message(bytes, &self.schema.messages[m], &mut map, depth + 1)?;
                Value::Object(map)
            }
            special => {
                let bytes = self.len(r, wire)?;
                self.special(special, bytes)?
            }
        })
    }

    /// The apimachinery value types, each a small message with its own JSON form.
    fn special(&self, ty: Type, bytes: &[u8]) -> Result<Value, ProtobufError> {
        if ty == Type::StringList {
            return self.string_list(bytes);
        }
        let fields = self.small_message(bytes)?;
        let int = |n: u32| match fields.get(n) {
            Some(Small::Varint(v)) => Ok(*v),
            Some(Small::Bytes(_)) => Err(self.wire_error(WireError::WrongWireType {
                expected: WireType::Varint.name(),
                found: WireType::Len.name(),
            })),
            None => Ok(0),
        };
        let bytes_of = |n: u32| match fields.get(n) {
            Some(Small::Bytes(b)) => Ok(Some(*b)),
            Some(Small::Varint(_)) => Err(self.wire_error(WireError::WrongWireType {
                expected: WireType::Len.name(),
                found: WireType::Varint.name(),
            })),
            None => Ok(None),
        };
        Ok(match ty {
            Type::Quantity => Value::String(bytes_of(1)?.map_or_else(|| "0".into(), lossy)),
            Type::IntOrString => match wire::as_i64(int(1)?) {
                0 => Value::from(wire::as_i32(int(2)?)),
                1 => Value::String(bytes_of(3)?.map(lossy).unwrap_or_default()),
                other => return Err(self.value_error(format!("IntOrString type {other}"))),
            },
            Type::Time | Type::MicroTime if bytes.is_empty() => Value::Null,
            Type::Time => {
                let seconds = wire::as_i64(int(1)?);
                let text = values::time(seconds).map_err(|e| self.value_error(e))?;
                text.map_or(Value::Null, Value::String)
            }
            Type::MicroTime => {
                let seconds = wire::as_i64(int(1)?);
                let nanos = wire::as_i32(int(2)?);
                let text = values::micro_time(seconds, nanos).map_err(|e| self.value_error(e))?;
                text.map_or(Value::Null, Value::String)
            }
            Type::Duration => Value::String(values::duration(wire::as_i64(int(1)?))),
            Type::RawExtension | Type::FieldsV1 => match bytes_of(1)? {
                None => Value::Null,
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|e| self.value_error(format!("embedded JSON: {e}")))?,
            },
            _ => return Err(self.value_error("not a value type")),
        })
    }

    /// The items (field 1, repeated) of a `[]string` wrapper message.
    fn string_list(&self, bytes: &[u8]) -> Result<Value, ProtobufError> {
        let mut r = Reader::new(bytes);
        let mut items = Vec::new();
        while !r.is_empty() {
            let (number, wire) = r.key().map_err(|e| self.wire_error(e))?;
            if number == 1 {
                items.push(Value::String(lossy(self.len(&mut r, wire)?)));
            } else {
                r.skip(wire).map_err(|e| self.wire_error(e))?;
            }
        }
        Ok(Value::Array(items))
    }

    /// The fields of a small flat message; the last occurrence of a field wins.
    fn small_message<'b>(&self, bytes: &'b [u8]) -> Result<SmallFields<'b>, ProtobufError> {
        let mut r = Reader::new(bytes);
        let mut fields = SmallFields::default();
        while !r.is_empty() {
            let (number, wire) = r.key().map_err(|e| self.wire_error(e))?;
            let value = match wire {
                WireType::Varint => Small::Varint(r.varint().map_err(|e| self.wire_error(e))?),
                WireType::Len => Small::Bytes(r.bytes().map_err(|e| self.wire_error(e))?),
                other => {
                    r.skip(other).map_err(|e| self.wire_error(e))?;
                    continue;
                }
            };
            if let Some(slot) = fields.0.iter_mut().find(|(n, _)| *n == number) {
                slot.1 = value;
            } else {
                fields.0.push((number, value));
            }
        }
        Ok(fields)
    }
}

#[derive(Clone, Copy)]
enum Small<'b> {
    Varint(u64),
    Bytes(&'b [u8]),
}

#[derive(Default)]
struct SmallFields<'b>(Vec<(u32, Small<'b>)>);

impl<'b> SmallFields<'b> {
    fn get(&self, number: u32) -> Option<&Small<'b>> {
        self.0.iter().find(|(n, _)| *n == number).map(|(_, v)| v)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether Go's `omitempty` drops this value.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// The JSON of a Go zero value of `ty`, for a map entry without a value.
fn zero_value(ty: Type) -> Value {
    match ty {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::Int32 | Type::Int64 | Type::Double | Type::IntOrString => Value::from(0),
        Type::Message(_) => Value::Object(Map::new()),
        Type::Quantity => Value::String("0".into()),
        Type::Duration => Value::String("0s".into()),
        Type::Time | Type::MicroTime | Type::RawExtension | Type::FieldsV1 => Value::Null,
        Type::StringList => Value::Array(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::wire::encode;
    use serde_json::json;

    /// A table with a self-referencing message and a few scalar shapes.
    fn schema() -> Schema {
        Schema::parse(
            r#"{"kinds":[],"messages":[
                ["node",[[1,"child",0,""],[2,"name","s","z"],[3,"nums","l","r"],
                         [4,"flags","b","r"],[5,"ratio","d",""],[6,"tags","s","m"]]]
            ]}"#,
        )
        .unwrap()
    }

    fn walk(schema: &Schema, bytes: &[u8]) -> Result<Value, ProtobufError> {
        let mut out = Map::new();
        Walker::new(schema).message(bytes, &schema.messages[0], &mut out, 0)?;
        Ok(Value::Object(out))
    }

    #[test]
    fn nesting_is_bounded() {
        let schema = schema();
        let mut bytes = Vec::new();
        for _ in 0..MAX_DEPTH {
            let mut outer = Vec::new();
            encode::len_field(1, &bytes, &mut outer);
            bytes = outer;
        }
        assert!(walk(&schema, &bytes).is_ok());
        let mut deeper = Vec::new();
        encode::len_field(1, &bytes, &mut deeper);
        match walk(&schema, &deeper) {
            Err(ProtobufError::TooDeep { path, limit }) => {
                assert_eq!(limit, MAX_DEPTH);
                assert!(path.starts_with("child.child."), "{path}");
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
    }

    #[test]
    fn repeated_scalars_packed_or_not() {
        let schema = schema();
        let mut bytes = Vec::new();
        encode::varint_field(3, 7, &mut bytes);
        let mut packed = Vec::new();
        encode::varint(8, &mut packed);
        encode::varint(u64::MAX, &mut packed); // -1
        encode::len_field(3, &packed, &mut bytes);
        encode::len_field(4, &[1, 0], &mut bytes);
        encode::key(5, 1, &mut bytes);
        bytes.extend(0.25f64.to_le_bytes());
        assert_eq!(
            walk(&schema, &bytes).unwrap(),
            json!({"nums": [7, 8, -1], "flags": [true, false], "ratio": 0.25})
        );
    }

    #[test]
    fn repeated_message_fields_merge_and_zero_values_unset() {
        let schema = schema();
        let mut bytes = Vec::new();
        let mut first = Vec::new();
        encode::len_field(2, b"a", &mut first);
        let mut second = Vec::new();
        encode::varint_field(3, 1, &mut second);
        encode::len_field(1, &first, &mut bytes);
        encode::len_field(1, &second, &mut bytes);
        encode::len_field(2, b"set", &mut bytes);
        encode::len_field(2, b"", &mut bytes); // last one wins, and "" means unset
        assert_eq!(
            walk(&schema, &bytes).unwrap(),
            json!({"child": {"name": "a", "nums": [1]}})
        );
    }

    #[test]
    fn map_entries_missing_parts_and_errors_name_the_key() {
        let schema = schema();
        let mut bytes = Vec::new();
        let mut only_key = Vec::new();
        encode::len_field(1, b"k", &mut only_key);
        encode::len_field(6, &only_key, &mut bytes);
        assert_eq!(walk(&schema, &bytes).unwrap(), json!({"tags": {"k": ""}}));

        let mut bad_value = Vec::new();
        encode::varint_field(2, 5, &mut bad_value); // a varint where a string belongs
        encode::len_field(1, b"env", &mut bad_value);
        let mut bytes = Vec::new();
        encode::len_field(6, &bad_value, &mut bytes);
        let err = walk(&schema, &bytes).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid protobuf at tags["env"]"#);
    }

    #[test]
    fn non_finite_doubles_are_refused() {
        let schema = schema();
        let mut bytes = Vec::new();
        encode::key(5, 1, &mut bytes);
        bytes.extend(f64::NAN.to_le_bytes());
        let err = walk(&schema, &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value at ratio: not a finite number"
        );
    }
}
