//! Sets of field paths in the tree shape of `FieldsV1`: `{"f:spec":{"f:replicas":{}}}`.
//!
//! A path is a list of elements: `f:<field>`, `k:<json object of key fields>` (an item of an
//! associative list), `v:<json value>` (an item of a set). A node is a *member* when the path
//! leading to it is in the set; FieldsV1 writes that as `".":{}` next to its children, or as
//! `{}` when it has none.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    root: Node,
}

/// Invariant: no child is empty (has no member in its subtree).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn union_with(&mut self, other: &Node) {
        self.member |= other.member;
        for (k, c) in &other.children {
            match self.children.get_mut(k) {
                Some(mine) => mine.union_with(c),
                None => {
                    self.children.insert(k.clone(), c.clone());
                }
            }
        }
    }

    /// Remove the members of `other` in place, dropping children left empty.
    fn subtract(&mut self, other: &Node) {
        self.member &= !other.member;
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(c);
                if mine.is_empty() {
                    self.children.remove(k);
                }
            }
        }
    }

    fn difference(&self, other: &Node) -> Node {
        let mut out = Node {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    fn intersection(&self, other: &Node) -> Node {
        let mut out = Node {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Members in tree order, each level's own members before its children's.
    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, c) in &self.children {
            if c.member {
                prefix.push(k.clone());
                out.push(prefix.clone());
                prefix.pop();
            }
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    fn into_json(self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in self.children {
            map.insert(k, c.into_json());
        }
        Value::Object(map)
    }

    fn from_json(v: &Value) -> Option<Node> {
        let obj = v.as_object()?;
        let mut node = Node {
            member: obj.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, c) in obj {
            if k == "." {
                node.member = true;
                continue;
            }
            let child = Node::from_json(c)?;
            if !child.is_empty() {
                node.children.insert(k.clone(), child);
            }
        }
        Some(node)
    }
}

impl FieldSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A set holding exactly these paths.
    pub(crate) fn from_paths<'p>(paths: impl IntoIterator<Item = &'p [&'p str]>) -> Self {
        let mut set = Self::new();
        for p in paths {
            let owned: Vec<String> = p.iter().map(|s| (*s).to_string()).collect();
            set.insert(&owned);
        }
        set
    }

    pub(crate) fn insert(&mut self, path: &[String]) {
        if path.is_empty() {
            return;
        }
        let mut node = &mut self.root;
        for pe in path {
            // Look up before inserting: most path elements already exist, and `entry` would
            // clone the key every time.
            if !node.children.contains_key(pe) {
                node.children.insert(pe.clone(), Node::default());
            }
            node = node
                .children
                .get_mut(pe)
                .expect("the child was just ensured");
        }
        node.member = true;
    }

    fn node(&self, path: &[String]) -> Option<&Node> {
        let mut node = &self.root;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[String]) -> bool {
        !path.is_empty() && self.node(path).is_some_and(|n| n.member)
    }

    /// Whether some member lies strictly below `path`.
    pub(crate) fn has_member_below(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.children.is_empty())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }

    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.root.union_with(&other.root);
        self.root.member = false;
    }

    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// `self` ∪ `other`, reusing `self`.
    pub(crate) fn union_into(mut self, other: &FieldSet) -> FieldSet {
        self.union_with(other);
        self
    }

    /// Remove the members of `other` from `self`.
    pub(crate) fn subtract(&mut self, other: &FieldSet) {
        self.root.subtract(&other.root);
        self.root.member = false;
    }

    /// Members of `self` that are not members of `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            root: self.root.difference(&other.root),
        }
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            root: self.root.intersection(&other.root),
        }
    }

    /// Every member path, parents before their children.
    pub(crate) fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.root.collect(&mut Vec::new(), &mut out);
        out
    }

    /// The FieldsV1 JSON form.
    #[cfg(test)]
    pub(crate) fn to_fields_v1(&self) -> Value {
        self.clone().into_fields_v1()
    }

    /// The FieldsV1 JSON form, consuming the set.
    pub(crate) fn into_fields_v1(self) -> Value {
        self.root.into_json()
    }

    /// Parse FieldsV1; `None` when it is not a tree of objects.
    pub(crate) fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let obj = v.as_object()?;
        let mut root = Node::default();
        for (k, c) in obj {
            if k == "." {
                continue;
            }
            let child = Node::from_json(c)?;
            if !child.is_empty() {
                root.children.insert(k.clone(), child);
            }
        }
        Some(FieldSet { root })
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="nginx"].image`,
/// `.metadata.finalizers[="a"]`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(name) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = pe.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(fields) => {
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push('[');
                    out.push_str(&parts.join(","));
                    out.push(']');
                }
                Err(_) => out.push_str(&format!("[{key}]")),
            }
        } else if let Some(value) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else {
            out.push_str(pe);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn round_trips_fields_v1() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert!(set.contains(&p(&["f:metadata", "f:labels"])));
        assert!(!set.contains(&p(&["f:metadata"])));
        assert!(set.contains(&p(&[
            "f:spec",
            "f:containers",
            "k:{\"name\":\"nginx\"}",
            "f:image"
        ])));
        assert_eq!(set.to_fields_v1(), v);
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_none());
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = FieldSet::new();
        b.insert(&p(&["f:spec", "f:replicas"]));
        b.insert(&p(&["f:metadata", "f:labels", "f:app"]));

        let d = a.difference(&b);
        assert_eq!(d.members(), vec![p(&["f:spec", "f:paused"])]);
        let i = a.intersection(&b);
        assert_eq!(i.members(), vec![p(&["f:spec", "f:replicas"])]);
        let u = a.union(&b);
        assert_eq!(u.members().len(), 3);
        assert!(u.has_member_below(&p(&["f:metadata"])));
        assert!(!u.has_member_below(&p(&["f:spec", "f:replicas"])));
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn displays_paths_like_kubernetes() {
        let path = p(&[
            "f:spec",
            "f:containers",
            "k:{\"name\":\"nginx\"}",
            "f:ports",
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
        ]);
        assert_eq!(
            display_path(&path),
            ".spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            display_path(&p(&["f:metadata", "f:finalizers", "v:\"a\""])),
            ".metadata.finalizers[=\"a\"]"
        );
    }
}
