//! The one error type of selector parsing and validation.

/// Why a selector was refused. Messages follow the wording of the real API server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector requirement that does not parse or is invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A label selector whose structure around requirements is wrong.
    #[error("{0}")]
    LabelSyntax(String),
    /// A `metav1.LabelSelector` object that cannot become a selector.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A field selector term without an operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A field selector value with a bad backslash escape.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value with an unescaped `,` or `=` (printed as a code point, as Go does).
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedCharacter(u32),
    /// A field the resource has a field label conversion for, but not this one.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// A field on a resource that only supports the metadata fields.
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    FieldNotKnown(String),
}
