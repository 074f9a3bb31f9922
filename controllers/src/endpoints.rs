//! Endpoints and EndpointSlices: for every Service with a selector, the addresses of the pods it
//! selects (ready ones in `addresses`, the others in `notReadyAddresses`; slices carry
//! ready/serving/terminating conditions), with target ports resolved by number or by container
//! port name. The slice is named `{service}-{hash}` and owned by the Service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::{Ctx, Error};
use crate::util;

const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Pods map to the Services of their namespace whose selector matches them.
pub fn pod_to_services(
    store: Store<Service>,
) -> impl Fn(Arc<Pod>) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    move |p| {
        let ns = p.metadata.namespace.clone();
        store
            .state()
            .iter()
            .filter(|s| s.metadata.namespace == ns)
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .is_some_and(|sel| {
                        !sel.is_empty() && util::map_matches(sel, p.metadata.labels.as_ref())
                    })
            })
            .map(|s| ObjectRef::from(s.as_ref()))
            .collect()
    }
}

fn resolve_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(i)) => Some(*i),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

fn pod_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&svc.metadata) {
        return Ok(Action::await_change());
    }
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
    else {
        return Ok(Action::await_change());
    };
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = ctx
        .pods_in(&ns)
        .into_iter()
        .filter(|p| util::map_matches(&selector, p.metadata.labels.as_ref()))
        .filter(|p| pod_ip(p).is_some() && !matches!(util::pod_phase(p), "Succeeded" | "Failed"))
        .collect();
    pods.sort_by_key(|p| p.name_any());
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);

    // Endpoints: one subset per distinct resolved port set.
    let mut subsets: BTreeMap<Vec<(String, i32, String)>, EndpointSubset> = BTreeMap::new();
    for p in pods.iter().filter(|p| !util::terminating(&p.metadata)) {
        let resolved: Vec<(String, i32, String)> = ports
            .iter()
            .filter_map(|sp| {
                Some((
                    sp.name.clone().unwrap_or_default(),
                    resolve_port(sp, p)?,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        let addr = EndpointAddress {
            ip: pod_ip(p).unwrap_or_default(),
            hostname: p
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .filter(|_| {
                    p.spec.as_ref().and_then(|s| s.subdomain.as_deref()) == Some(name.as_str())
                }),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(p)),
        };
        let subset = subsets
            .entry(resolved.clone())
            .or_insert_with(|| EndpointSubset {
                ports: Some(
                    resolved
                        .iter()
                        .map(|(n, port, proto)| EndpointPort {
                            name: (!n.is_empty()).then(|| n.clone()),
                            port: *port,
                            protocol: Some(proto.clone()),
                            app_protocol: None,
                        })
                        .collect(),
                ),
                ..EndpointSubset::default()
            });
        if util::pod_ready(p) || publish_not_ready {
            subset.addresses.get_or_insert_with(Vec::new).push(addr);
        } else {
            subset
                .not_ready_addresses
                .get_or_insert_with(Vec::new)
                .push(addr);
        }
    }
    let subsets: Vec<EndpointSubset> = subsets.into_values().collect();
    let ep = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: svc.metadata.labels.clone(),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    let ep_api: Api<Endpoints> = ctx.api(&ns);
    match ep_api.get_opt(&name).await? {
        None => match ep_api.create(&PostParams::default(), &ep).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        },
        Some(current) => {
            if current.subsets != ep.subsets || current.metadata.labels != ep.metadata.labels {
                let mut next = ep.clone();
                next.metadata.resource_version = current.metadata.resource_version.clone();
                ep_api.replace(&name, &PostParams::default(), &next).await?;
            }
        }
    }

    // The EndpointSlice.
    let slice_name = format!("{name}-{}", util::hash_of(&svc.metadata.uid, None));
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert("kubernetes.io/service-name".into(), name.clone());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        MANAGED_BY.into(),
    );
    let first = pods.first();
    let slice_ports: Vec<SlicePort> = ports
        .iter()
        .map(|sp| SlicePort {
            name: Some(sp.name.clone().unwrap_or_default()),
            port: first.and_then(|p| resolve_port(sp, p)).or(Some(sp.port)),
            protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: sp.app_protocol.clone(),
        })
        .collect();
    let endpoints: Vec<Endpoint> = pods
        .iter()
        .map(|p| {
            let terminating = util::terminating(&p.metadata);
            let ready = util::pod_ready(p);
            Endpoint {
                addresses: vec![pod_ip(p).unwrap_or_default()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready && !terminating),
                    serving: Some(ready),
                    terminating: Some(terminating),
                }),
                node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(pod_ref(p)),
                ..Endpoint::default()
            }
        })
        .collect();
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            owner_references: Some(vec![util::owner_ref(svc.as_ref())]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(slice_ports),
    };
    let slice_api: Api<EndpointSlice> = ctx.api(&ns);
    match slice_api.get_opt(&slice_name).await? {
        None => match slice_api.create(&PostParams::default(), &slice).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        },
        Some(current) => {
            if current.endpoints != slice.endpoints
                || current.ports != slice.ports
                || current.metadata.labels != slice.metadata.labels
            {
                let mut next = slice.clone();
                next.metadata.resource_version = current.metadata.resource_version.clone();
                slice_api
                    .replace(&slice_name, &PostParams::default(), &next)
                    .await?;
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
