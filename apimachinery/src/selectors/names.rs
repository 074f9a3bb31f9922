//! Validation of label keys and values, with Kubernetes' messages, and Go-style formatting of
//! `field.Invalid` errors.

/// Label keys: the same rule validation applies (`validation.IsQualifiedName`).
pub(super) fn qualified_name_errors(value: &str) -> Vec<String> {
    crate::validation::names::is_qualified_name(value)
}

/// Label values (`validation.IsValidLabelValue`).
pub(super) fn label_value_errors(value: &str) -> Vec<String> {
    crate::validation::names::is_label_value(value)
}

pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `[]string`.
pub(super) fn go_string_slice(values: Option<&[String]>) -> String {
    match values {
        None => "[]string(nil)".to_string(),
        Some(v) => format!(
            "[]string{{{}}}",
            v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `field.Invalid(path, value, detail).Error()`; `bad` is already formatted.
pub(super) fn invalid(path: &str, bad: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {bad}: {detail}")
}

/// `errors.NewAggregate(errs).Error()`: one message alone, several in brackets.
pub(super) fn aggregate(errs: &[String]) -> Option<String> {
    match errs {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert!(qualified_name_errors("app").is_empty());
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(qualified_name_errors("A_b-9").is_empty());
        let e = qualified_name_errors("-bad");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("name part must consist of alphanumeric"),
            "{e:?}"
        );
        assert!(
            e[0].contains("(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used"),
            "{e:?}"
        );
        assert_eq!(
            qualified_name_errors("/x"),
            vec!["prefix part must be non-empty"]
        );
        assert!(qualified_name_errors("Example.com/x")[0].starts_with("prefix part a lowercase"));
        assert!(qualified_name_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(qualified_name_errors(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn label_values() {
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_x-y").is_empty());
        assert_eq!(label_value_errors("a b").len(), 1);
        assert_eq!(label_value_errors(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(go_string_slice(None), "[]string(nil)");
        assert_eq!(
            go_string_slice(Some(&["a".to_string(), "b".to_string()])),
            "[]string{\"a\", \"b\"}"
        );
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(&["x".into(), "y".into()]).unwrap(), "[x, y]");
    }
}
