//! Service cluster IPs and node ports, allocated by the server as kube-apiserver does.
//!
//! Allocation scans the stored Services under the API's allocation lock, so two creates never
//! pick the same address. Service counts are small next to pods; a bitmap allocator can replace
//! the scan when a benchmark says so.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::handlers::Api;
use crate::status::{ApiError, StatusCause};

pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

fn invalid(field: &str, message: String) -> ApiError {
    let res = skiff_apimachinery::Registry::builtin()
        .get("", "v1", "services")
        .expect("services are registered");
    ApiError::invalid(
        "Service",
        res,
        "",
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    )
}

/// Assign `spec.clusterIP(s)` and node ports that the user left empty; keep the old ones on
/// update (they are immutable).
pub async fn allocate(api: &Api, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let res = api
        .registry
        .get("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not registered"))?;
    let svc_type = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if let Some(old) = old
        && svc.pointer("/spec/clusterIP").is_none()
    {
        if let Some(ip) = old.pointer("/spec/clusterIP") {
            svc["spec"]["clusterIP"] = ip.clone();
        }
        if let Some(ips) = old.pointer("/spec/clusterIPs") {
            svc["spec"]["clusterIPs"] = ips.clone();
        }
    }
    let (items, _) = api.objects.list(res, None, None, None).await?;
    let me = (
        svc.pointer("/metadata/namespace").cloned(),
        svc.pointer("/metadata/name").cloned(),
    );
    let others = items.iter().filter(|o| {
        (
            o.pointer("/metadata/namespace").cloned(),
            o.pointer("/metadata/name").cloned(),
        ) != me
    });
    let mut used_ips = HashSet::new();
    let mut used_ports = HashSet::new();
    for o in others {
        if let Some(ip) = o.pointer("/spec/clusterIP").and_then(Value::as_str) {
            used_ips.insert(ip.to_string());
        }
        for p in o
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                used_ports.insert(np);
            }
        }
    }
    if svc_type != "ExternalName" {
        match svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            Some("None") => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            Some(ip) if !ip.is_empty() => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(
                        "spec.clusterIP",
                        format!("Invalid value: \"{ip}\": must be a valid IP address"),
                    )
                })?;
                if !in_cidr(parsed, api.service_cidr) {
                    return Err(invalid(
                        "spec.clusterIP",
                        format!(
                            "Invalid value: \"{ip}\": provided IP is not in the valid range. The range of valid IPs is {}/{}",
                            api.service_cidr.0, api.service_cidr.1
                        ),
                    ));
                }
                if used_ips.contains(ip) && old.is_none() {
                    return Err(invalid(
                        "spec.clusterIP",
                        format!("Invalid value: \"{ip}\": provided IP is already allocated"),
                    ));
                }
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            _ => {
                let ip = free_ip(api.service_cidr, &used_ips).ok_or_else(|| {
                    ApiError::internal("failed to allocate a service IP: the range is full")
                })?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
    }
    if svc_type == "NodePort" || svc_type == "LoadBalancer" {
        let old_ports: Vec<Value> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if p.get("nodePort").and_then(Value::as_u64).is_some() {
                    continue;
                }
                let previous = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port"))
                    .and_then(|o| o.get("nodePort"))
                    .and_then(Value::as_u64);
                let port = match previous {
                    Some(n) => n,
                    None => (u64::from(NODE_PORT_RANGE.0)..=u64::from(NODE_PORT_RANGE.1))
                        .find(|n| !used_ports.contains(n))
                        .ok_or_else(|| {
                            ApiError::internal("failed to allocate a node port: the range is full")
                        })?,
                };
                used_ports.insert(port);
                p["nodePort"] = json!(port);
            }
        }
    }
    Ok(())
}

fn in_cidr(ip: Ipv4Addr, (base, bits): (Ipv4Addr, u8)) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    };
    (u32::from(ip) & mask) == (u32::from(base) & mask)
}

/// The lowest free address in the range, skipping the network address.
fn free_ip((base, bits): (Ipv4Addr, u8), used: &HashSet<String>) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - u32::from(bits));
    let start = u64::from(u32::from(base));
    (1..size.saturating_sub(1))
        .filter_map(|off| u32::try_from(start + off).ok())
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(&ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_free_address() {
        let cidr = (Ipv4Addr::new(10, 96, 0, 0), 12);
        let mut used = HashSet::new();
        assert_eq!(free_ip(cidr, &used), Some(Ipv4Addr::new(10, 96, 0, 1)));
        used.insert("10.96.0.1".to_string());
        assert_eq!(free_ip(cidr, &used), Some(Ipv4Addr::new(10, 96, 0, 2)));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 1, 1), cidr));
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1), cidr));
    }
}
