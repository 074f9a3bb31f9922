//! Label selectors: the string syntax of `?labelSelector=`, `metav1.LabelSelector` objects, matching
//! label sets, and the canonical string form Kubernetes prints (requirements sorted by key).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use super::SelectorError;
use super::names::{
    aggregate, go_quote, go_string_slice, invalid, label_value_errors, qualified_name_errors,
};

/// How a requirement relates a label key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One condition on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// `labels.NewRequirement`: checks the key, the number of values for the operator and each
    /// value. `path` prefixes field paths in messages (`""` for none).
    fn new(
        key: &str,
        op: Operator,
        values: Option<Vec<String>>,
        path: &str,
    ) -> Result<Self, String> {
        let child = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        let mut errs = Vec::new();
        let key_errs = qualified_name_errors(key);
        if !key_errs.is_empty() {
            errs.push(invalid(&child("key"), &go_quote(key), &key_errs.join("; ")));
        }
        let values_path = child("values");
        let count = values.as_ref().map_or(0, Vec::len);
        let shown = || go_string_slice(values.as_deref());
        match op {
            Operator::In | Operator::NotIn if count == 0 => errs.push(invalid(
                &values_path,
                &shown(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if count != 1 => errs
                .push(invalid(
                    &values_path,
                    &shown(),
                    "exact-match compatibility requires one single value",
                )),
            Operator::Exists | Operator::DoesNotExist if count != 0 => errs.push(invalid(
                &values_path,
                &shown(),
                "values set must be empty for exists and does not exist",
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if count != 1 {
                    errs.push(invalid(
                        &values_path,
                        &shown(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().flatten().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("{values_path}[{i}]"),
                            &go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().flatten().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(invalid(
                    &format!("{values_path}[{i}][{key}]"),
                    &go_quote(v),
                    &value_errs.join("; "),
                ));
            }
        }
        match aggregate(&errs) {
            Some(message) => Err(message),
            None => Ok(Self {
                key: key.to_string(),
                op,
                values: values.unwrap_or_default(),
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.op
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => got.is_some_and(listed),
            Operator::NotIn | Operator::NotEquals => !got.is_some_and(listed),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(got), [want]) = (got, self.values.as_slice()) else {
                    return false;
                };
                match (got.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(g), Ok(w)) if self.op == Operator::GreaterThan => g > w,
                    (Ok(g), Ok(w)) => g < w,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values = self.values.clone();
        values.sort();
        let values = values.join(",");
        if matches!(self.op, Operator::In | Operator::NotIn) {
            write!(f, "{op}({values})")
        } else {
            write!(f, "{op}{values}")
        }
    }
}

/// A conjunction of requirements on labels. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parse the `?labelSelector=` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`, `a>1`, `a<1`, joined by commas.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// `metav1.LabelSelectorAsSelector`: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
    /// DoesNotExist). An empty object selects everything.
    pub fn from_api(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(
                Requirement::new(k, Operator::Equals, Some(vec![v.clone()]), "")
                    .map_err(SelectorError::InvalidLabelSelector)?,
            );
        }
        for expr in sel.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidLabelSelector(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )));
                }
            };
            requirements.push(
                Requirement::new(&expr.key, op, expr.values.clone(), "")
                    .map_err(SelectorError::InvalidLabelSelector)?,
            );
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// [`LabelSelector::from_api`] on the JSON form of a `metav1.LabelSelector`.
    pub fn from_api_value(sel: &Value) -> Result<Self, SelectorError> {
        let typed: metav1::LabelSelector = serde_json::from_value(sel.clone())
            .map_err(|e| SelectorError::InvalidLabelSelector(e.to_string()))?;
        Self::from_api(&typed)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Match against `metadata.labels` of a JSON object (absent labels are an empty set).
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// The canonical form Kubernetes prints: requirements sorted by key, joined by commas.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    End,
    ClosePar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Ident,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
    Error,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosePar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Split the input into tokens the way the Go lexer does (byte-wise; every delimiter is ASCII).
fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                pos += 1;
                match keyword(&s[start..pos]) {
                    Some(t) => last = Some((t, pos)),
                    None if last.is_some() => {
                        pos -= 1;
                        break;
                    }
                    None => {}
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => {
                    out.push((
                        Tok::Error,
                        format!("error expected: keyword found '{}'", &s[start..pos]),
                    ));
                }
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = keyword(lit).unwrap_or(Tok::Ident);
            out.push((tok, lit.to_string()));
        }
    }
}

/// Whether `in`/`notin` are operators (after a key) or plain identifiers (as values).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Tok, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        Self {
            items: lex(s),
            position: 0,
        }
    }

    fn lookahead(&self, ctx: Context) -> (Tok, String) {
        let (tok, lit) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        match tok {
            Tok::In | Tok::NotIn if ctx == Context::Values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn consume(&mut self, ctx: Context) -> (Tok, String) {
        let item = self.lookahead(ctx);
        if self.position < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    out.push(
                        self.parse_requirement()
                            .map_err(SelectorError::Requirement)?,
                    );
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Tok::End => return Ok(out),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(SelectorError::LabelSyntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::LabelSyntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Tok::End => return Ok(out),
                _ => {
                    return Err(SelectorError::LabelSyntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(op) = unary {
            return Requirement::new(&key, op, None, "");
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, Some(values), "")
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let negated = tok == Tok::Not;
        if negated {
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = qualified_name_errors(&lit);
        if !errs.is_empty() {
            return Err(invalid("<nil>", &go_quote(&lit), &errs.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        let op = if negated {
            Some(Operator::DoesNotExist)
        } else if next == Tok::End || next == Tok::Comma {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: '=', '!=', '==', 'in', notin'"
                ));
            }
        })
    }

    /// `( v1, v2 )`; empty entries are the empty string. Returned sorted and deduplicated.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Tok::ClosePar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosePar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Tok::Ident => {
                    set.insert(lit);
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosePar => return Ok(set.into_iter().collect()),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Tok::ClosePar {
                        set.insert(String::new());
                        return Ok(set.into_iter().collect());
                    }
                    if t2 == Tok::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn equality_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(!sel("app!=web").matches(&l));
        assert!(sel("missing!=x").matches(&l));
        assert!(!sel("missing=x").matches(&l));
        assert!(sel("app=web,tier=front").matches(&l));
        assert!(!sel("app=web,tier=back").matches(&l));
    }

    #[test]
    fn set_operators() {
        let l = labels(&[("env", "prod")]);
        assert!(sel("env in (prod, staging)").matches(&l));
        assert!(!sel("env in (dev)").matches(&l));
        assert!(sel("env notin (dev,qa)").matches(&l));
        assert!(!sel("env notin (prod)").matches(&l));
        assert!(sel("other notin (prod)").matches(&l));
        assert!(!sel("other in (prod)").matches(&l));
        // `in` and `notin` are plain values inside parentheses.
        assert!(sel("x in (in,notin)").matches(&labels(&[("x", "notin")])));
    }

    #[test]
    fn existence_and_comparison() {
        let l = labels(&[("app", "web"), ("gen", "5")]);
        assert!(sel("app").matches(&l));
        assert!(!sel("nope").matches(&l));
        assert!(sel("!nope").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("gen>4").matches(&l));
        assert!(!sel("gen>5").matches(&l));
        assert!(sel("gen<6").matches(&l));
        assert!(!sel("app>1").matches(&l));
    }

    #[test]
    fn empty_values_and_empty_selector() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(sel("a=").matches(&labels(&[("a", "")])));
        assert!(sel("a in (,x)").matches(&labels(&[("a", "")])));
        assert!(sel("a in ()").matches(&labels(&[("a", "")])));
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
    }

    #[test]
    fn canonical_string_sorts_keys_and_values() {
        assert_eq!(
            sel("z=1, a in (y,x), !b, c, d notin (q)").to_string(),
            "a in (x,y),!b,c,d notin (q),z=1"
        );
        assert_eq!(sel("k==v,j!=w").to_string(), "j!=w,k==v");
    }

    #[test]
    fn syntax_errors_read_like_kubernetes() {
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(
            err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("a=b,,"), "found ',', expected: identifier after ','");
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'"
        );
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
        assert!(
            err("a>x").contains("for 'Gt', 'Lt' operators, the value must be an integer"),
            "{}",
            err("a>x")
        );
        let bad_key = err("-a=b");
        assert!(
            bad_key.starts_with(
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist"
            ),
            "{bad_key}"
        );
        let bad_value = err("a=b$");
        assert!(
            bad_value.starts_with(
                "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label"
            ),
            "{bad_value}"
        );
    }

    #[test]
    fn from_api_selector() {
        let api: metav1::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let s = LabelSelector::from_api(&api).unwrap();
        assert_eq!(s.to_string(), "app=web,!canary,tier in (a,b)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(
            LabelSelector::from_api(&metav1::LabelSelector::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn from_api_errors() {
        let bad_op = LabelSelector::from_api_value(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap_err();
        assert_eq!(
            bad_op.to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let no_values = LabelSelector::from_api_value(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
        )
        .unwrap_err();
        assert_eq!(
            no_values.to_string(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let s = sel("app=web");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(sel("").matches_object(&json!({})));
        assert!(sel("!app").matches_object(&json!({"metadata": {"name": "x"}})));
    }
}
