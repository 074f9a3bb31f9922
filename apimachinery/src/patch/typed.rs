//! Objects as server-side apply sees them: which paths a configuration sets, what changed
//! between two versions of an object, how an applied configuration merges into the live object,
//! and how a path is removed from an object.
//!
//! Structs and free-form maps are walked field by field unless atomic; a list is atomic, a set
//! of primitives (`v:` items) or a map keyed by its key fields (`k:` items).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::meta::{FieldMeta, ListType, PatchMeta, Untyped};

/// How a value is tracked.
enum Shape {
    Leaf,
    Map,
    List(ListType),
}

fn shape(v: &Value, fm: Option<&FieldMeta<'_>>) -> Shape {
    match v {
        Value::Object(_) if !fm.is_some_and(|f| f.atomic_map) => Shape::Map,
        Value::Array(_) => match fm.map_or(ListType::Atomic, FieldMeta::apply_list_type) {
            ListType::Atomic => Shape::Leaf,
            ListType::Map(keys) if keys.is_empty() => Shape::Leaf,
            t => Shape::List(t),
        },
        _ => Shape::Leaf,
    }
}

fn elem<'m>(fm: Option<&'m FieldMeta<'_>>) -> &'m dyn PatchMeta {
    match fm {
        Some(f) => f.elem(),
        None => &Untyped,
    }
}

/// The path element of a list item: `v:<json>` in a set, `k:{...}` in a map-list.
pub(crate) fn item_element(
    item: &Value,
    list: &ListType,
    elem: &dyn PatchMeta,
) -> Result<String, String> {
    match list {
        ListType::Map(keys) => {
            let Value::Object(obj) = item else {
                return Err("an item of an associative list is not an object".to_string());
            };
            let mut parts: Vec<(&str, Value)> = Vec::with_capacity(keys.len());
            for k in keys {
                let value = obj
                    .get(k)
                    .filter(|v| !v.is_null())
                    .cloned()
                    .or_else(|| elem.default_value(k))
                    .or_else(|| (k == "protocol").then(|| Value::String("TCP".into())));
                match value {
                    Some(v) => parts.push((k, v)),
                    None => {
                        return Err(format!(
                            "an item of an associative list omits the key field {k:?}"
                        ));
                    }
                }
            }
            parts.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = parts
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).to_string())))
                .collect();
            Ok(format!("k:{{{}}}", fields.join(",")))
        }
        ListType::Set | ListType::Atomic => Ok(format!("v:{item}")),
    }
}

/// The paths a configuration sets: its leaves and its list items (maps themselves are not
/// members).
pub(crate) fn field_set(
    obj: &Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    set_map(obj, meta, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn set_map(
    obj: &Map<String, Value>,
    meta: &dyn PatchMeta,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) -> Result<(), String> {
    for (k, v) in obj {
        let fm = meta.field(k);
        path.push(format!("f:{k}"));
        set_value(v, fm.as_ref(), path, out)?;
        path.pop();
    }
    Ok(())
}

fn set_value(
    v: &Value,
    fm: Option<&FieldMeta<'_>>,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) -> Result<(), String> {
    match (shape(v, fm), v) {
        (Shape::Map, Value::Object(m)) => set_map(m, elem(fm), path, out),
        (Shape::List(t), Value::Array(items)) => {
            for item in items {
                path.push(item_element(item, &t, elem(fm))?);
                out.insert(path);
                if let (ListType::Map(_), Value::Object(m)) = (&t, item) {
                    set_map(m, elem(fm), path, out)?;
                }
                path.pop();
            }
            Ok(())
        }
        _ => {
            out.insert(path);
            Ok(())
        }
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Paths whose value is new or different.
    pub(crate) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compare `old` with `new`. Without `old` (a create) the object is compared with an empty
/// one of its type, in which Kubernetes' zero values already hold the struct fields and the
/// required fields: those are not recorded as added themselves.
pub(crate) fn compare(
    old: Option<&Map<String, Value>>,
    new: &Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Comparison {
    let mut c = Comparer {
        out: Comparison::default(),
        skeleton: old.is_none(),
        path: Vec::new(),
    };
    c.map(old, Some(new), meta, false);
    c.out
}

struct Comparer {
    out: Comparison,
    skeleton: bool,
    path: Vec<String>,
}

impl Comparer {
    fn map(
        &mut self,
        l: Option<&Map<String, Value>>,
        r: Option<&Map<String, Value>>,
        meta: &dyn PatchMeta,
        in_new: bool,
    ) {
        let mut keys: Vec<&String> = l.map(|m| m.keys().collect()).unwrap_or_default();
        if let Some(r) = r {
            keys.extend(r.keys().filter(|k| !l.is_some_and(|l| l.contains_key(*k))));
        }
        for k in keys {
            let fm = meta.field(k);
            self.path.push(format!("f:{k}"));
            self.value(
                l.and_then(|m| m.get(k)),
                r.and_then(|m| m.get(k)),
                fm.as_ref(),
                in_new,
            );
            self.path.pop();
        }
    }

    fn leaf(&mut self, l: Option<&Value>, r: Option<&Value>) {
        match (l, r) {
            (None, Some(_)) => self.out.added.insert(&self.path),
            (Some(_), None) => self.out.removed.insert(&self.path),
            (Some(a), Some(b)) if a != b => self.out.modified.insert(&self.path),
            _ => {}
        }
    }

    /// Whether a container absent on the left is recorded as added itself.
    fn marks_added(&self, fm: Option<&FieldMeta<'_>>, is_map: bool, in_new: bool) -> bool {
        if !self.skeleton || in_new {
            return true;
        }
        match fm {
            None => true,
            Some(f) => !f.required && (!is_map || f.free_form_map),
        }
    }

    fn value(
        &mut self,
        l: Option<&Value>,
        r: Option<&Value>,
        fm: Option<&FieldMeta<'_>>,
        in_new: bool,
    ) {
        let ls = l.map(|v| shape(v, fm));
        let rs = r.map(|v| shape(v, fm));
        let is_map = match (&ls, &rs) {
            (Some(Shape::Map) | None, Some(Shape::Map) | None) => true,
            (Some(Shape::List(a)), Some(Shape::List(b))) if a == b => false,
            (Some(Shape::List(_)), None) | (None, Some(Shape::List(_))) => false,
            _ => return self.leaf(l, r),
        };
        let empty = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if empty(l) && empty(r) {
            if self.skeleton && !in_new && l.is_none() {
                return;
            }
            return self.leaf(l, r);
        }
        let marked = l.is_none() && self.marks_added(fm, is_map, in_new);
        let child_new = in_new || marked;
        if is_map {
            self.map(
                l.and_then(Value::as_object),
                r.and_then(Value::as_object),
                elem(fm),
                child_new,
            );
        } else {
            let list_type = match rs.or(ls) {
                Some(Shape::List(t)) => t,
                _ => return self.leaf(l, r),
            };
            if !self.list(l, r, &list_type, elem(fm), child_new) {
                return self.leaf(l, r);
            }
        }
        if marked {
            self.out.added.insert(&self.path);
        } else if r.is_none() {
            self.out.removed.insert(&self.path);
        }
    }

    /// Compare list items by their path elements; false when some item has no usable key.
    fn list(
        &mut self,
        l: Option<&Value>,
        r: Option<&Value>,
        t: &ListType,
        elem: &dyn PatchMeta,
        in_new: bool,
    ) -> bool {
        let index = |v: Option<&Value>| -> Option<Vec<(String, Value)>> {
            let items = v
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            items
                .iter()
                .map(|i| item_element(i, t, elem).ok().map(|pe| (pe, i.clone())))
                .collect()
        };
        let (Some(li), Some(ri)) = (index(l), index(r)) else {
            return false;
        };
        let lmap: HashMap<&str, &Value> = li.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let rmap: HashMap<&str, &Value> = ri.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut seen = HashSet::new();
        let order = li.iter().chain(ri.iter()).map(|(k, _)| k.as_str());
        for pe in order {
            if !seen.insert(pe) {
                continue;
            }
            let (lv, rv) = (lmap.get(pe).copied(), rmap.get(pe).copied());
            self.path.push(pe.to_string());
            match (t, lv, rv) {
                (ListType::Map(_), _, _)
                    if lv.is_none_or(Value::is_object) && rv.is_none_or(Value::is_object) =>
                {
                    self.map(
                        lv.and_then(Value::as_object),
                        rv.and_then(Value::as_object),
                        elem,
                        in_new || lv.is_none(),
                    );
                    if lv.is_none() {
                        self.out.added.insert(&self.path);
                    } else if rv.is_none() {
                        self.out.removed.insert(&self.path);
                    }
                }
                _ => self.leaf(lv, rv),
            }
            self.path.pop();
        }
        true
    }
}

/// Merge an applied configuration into the live object: fields of the configuration win,
/// maps merge field by field, keyed lists and sets merge item by item, `null` removes.
pub(crate) fn merge(
    live: Map<String, Value>,
    config: &Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, String> {
    merge_map(live, config, meta)
}

fn merge_map(
    mut l: Map<String, Value>,
    r: &Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, String> {
    for (k, rv) in r {
        if rv.is_null() {
            l.remove(k);
            continue;
        }
        let fm = meta.field(k);
        let merged = merge_value(l.remove(k), rv, fm.as_ref())?;
        l.insert(k.clone(), merged);
    }
    Ok(l)
}

fn merge_value(l: Option<Value>, r: &Value, fm: Option<&FieldMeta<'_>>) -> Result<Value, String> {
    match (shape(r, fm), r) {
        (Shape::Map, Value::Object(rm)) => {
            let lm = match l {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            Ok(Value::Object(merge_map(lm, rm, elem(fm))?))
        }
        (Shape::List(t), Value::Array(ra)) => {
            let la = match l {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            Ok(Value::Array(merge_list(la, ra, &t, elem(fm))?))
        }
        _ => Ok(r.clone()),
    }
}

/// Merge list items the way server-side apply orders them: live-only items keep their place,
/// items of the configuration follow the configuration's order.
fn merge_list(
    l: Vec<Value>,
    r: &[Value],
    t: &ListType,
    elem: &dyn PatchMeta,
) -> Result<Vec<Value>, String> {
    // A live item without a usable key cannot match anything: give it a unique element.
    let lpes: Vec<String> = l
        .iter()
        .enumerate()
        .map(|(i, v)| item_element(v, t, elem).unwrap_or_else(|_| format!("i:{i}")))
        .collect();
    let rpes: Vec<String> = r
        .iter()
        .map(|v| item_element(v, t, elem))
        .collect::<Result<_, _>>()?;

    let mut observed_l: HashMap<&str, usize> = HashMap::new();
    for (i, pe) in lpes.iter().enumerate() {
        observed_l.entry(pe.as_str()).or_insert(i);
    }
    let mut observed_r: HashMap<&str, usize> = HashMap::new();
    for (i, pe) in rpes.iter().enumerate() {
        if observed_r.insert(pe.as_str(), i).is_some() {
            return Err(format!("duplicate entries for key {pe}"));
        }
    }

    let merge_item = |lv: Option<&Value>, rv: &Value| -> Result<Value, String> {
        match (t, rv) {
            (ListType::Map(_), Value::Object(rm)) => {
                let lm = match lv {
                    Some(Value::Object(m)) => m.clone(),
                    _ => Map::new(),
                };
                Ok(Value::Object(merge_map(lm, rm, elem)?))
            }
            _ => Ok(rv.clone()),
        }
    };

    let mut shared = rpes
        .iter()
        .filter(|pe| observed_l.contains_key(pe.as_str()));
    let mut next_shared = shared.next();
    let mut merged_r: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (ln, rn) = (lpes.len(), rpes.len());
    let (mut li, mut ri) = (0, 0);
    while li < ln || ri < rn {
        if li < ln && ri < rn {
            let pe = &lpes[li];
            if *pe == rpes[ri] {
                merged_r.insert(pe);
                out.push(merge_item(Some(&l[li]), &r[ri])?);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_r.contains_key(pe.as_str()) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < ln {
            let pe = lpes[li].as_str();
            if !observed_r.contains_key(pe) {
                out.push(l[li].clone());
                li += 1;
                continue;
            }
            if merged_r.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < rn {
            let pe = rpes[ri].as_str();
            merged_r.insert(pe);
            let lv = observed_l.get(pe).map(|&i| &l[i]);
            out.push(merge_item(lv, &r[ri])?);
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

/// Remove the value at `path` from `obj`; a path that does not exist is ignored. A list or a
/// free-form map left empty goes too, as Kubernetes does not keep empty ones.
pub(crate) fn remove_path(obj: &mut Map<String, Value>, path: &[String], meta: &dyn PatchMeta) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(name) = first.strip_prefix("f:") else {
        return;
    };
    if rest.is_empty() {
        obj.remove(name);
        return;
    }
    let fm = meta.field(name);
    let Some(child) = obj.get_mut(name) else {
        return;
    };
    let emptied = match child {
        Value::Object(m) => {
            remove_path(m, rest, elem(fm.as_ref()));
            m.is_empty() && fm.as_ref().is_some_and(|f| f.free_form_map)
        }
        Value::Array(items) => {
            let Some(f) = fm.as_ref() else {
                return;
            };
            let t = f.apply_list_type();
            let Some(i) = items
                .iter()
                .position(|it| item_element(it, &t, f.elem()).is_ok_and(|pe| pe == rest[0]))
            else {
                return;
            };
            if rest.len() == 1 {
                items.remove(i);
            } else if let Value::Object(m) = &mut items[i] {
                remove_path(m, &rest[1..], f.elem());
            }
            items.is_empty()
        }
        _ => false,
    };
    if emptied {
        obj.remove(name);
    }
}
