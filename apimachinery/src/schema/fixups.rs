//! Where `k8s-openapi`'s schemas differ from what the real API server publishes.

use serde_json::{Map, Value, json};

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Fix every definition in place.
pub(super) fn apply(definitions: &mut Map<String, Value>) {
    // The server publishes both as strings; IntOrString keeps a format naming it.
    if let Some(Value::Object(def)) = definitions.get_mut(INT_OR_STRING) {
        def.remove("x-kubernetes-int-or-string");
        def.insert("type".into(), json!("string"));
        def.insert("format".into(), json!("int-or-string"));
    }
    if let Some(Value::Object(def)) = definitions.get_mut(QUANTITY) {
        def.remove("x-kubernetes-int-or-string");
        def.insert("type".into(), json!("string"));
    }
    for def in definitions.values_mut() {
        drop_required_metadata(def);
    }
}

/// `k8s-openapi` makes `metadata` mandatory on its resource types; the API does not.
fn drop_required_metadata(def: &mut Value) {
    let Some(obj) = def.as_object_mut() else {
        return;
    };
    let Some(Value::Array(required)) = obj.get_mut("required") else {
        return;
    };
    required.retain(|r| r != "metadata");
    if required.is_empty() {
        obj.remove("required");
    }
}
