//! Pod CIDRs for nodes, allocated by the server when a Node is created without one (the
//! node-ipam controller's job in kube-controller-manager): one /24 per node out of the
//! cluster CIDR 10.244.0.0/16, never reusing a range another Node holds.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::handlers::Api;
use crate::status::ApiError;

/// The cluster's pod network: node ranges are /24s of 10.244.0.0/16.
const CLUSTER_PREFIX: [u8; 2] = [10, 244];

/// Fill `spec.podCIDR(s)` of a new Node when empty.
pub async fn allocate_pod_cidr(api: &Api, node: &mut Value) -> Result<(), ApiError> {
    if node
        .pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Ok(());
    }
    let res = api
        .registry
        .get("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
    let (items, _) = api.objects.list(res, None, None, None).await?;
    let used: HashSet<String> = items
        .iter()
        .filter_map(|n| {
            n.pointer("/spec/podCIDR")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    let [a, b] = CLUSTER_PREFIX;
    let Some(cidr) = (1u8..=254)
        .map(|c| format!("{a}.{b}.{c}.0/24"))
        .find(|c| !used.contains(c))
    else {
        return Err(ApiError::internal(
            "the cluster CIDR has no free node range",
        ));
    };
    if !node["spec"].is_object() {
        node["spec"] = json!({});
    }
    node["spec"]["podCIDR"] = json!(cidr);
    node["spec"]["podCIDRs"] = json!([cidr]);
    Ok(())
}
