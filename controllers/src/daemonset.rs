//! daemonset controller (placeholder until written).

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::runtime::{Ctx, Error};

pub async fn reconcile(_obj: Arc<k8s_openapi::api::apps::v1::DaemonSet>, _ctx: Arc<Ctx>) -> Result<Action, Error> {
    Ok(Action::await_change())
}

pub fn node_to_daemonsets(
    store: kube::runtime::reflector::Store<k8s_openapi::api::apps::v1::DaemonSet>,
) -> impl Fn(Arc<k8s_openapi::api::core::v1::Node>) -> Vec<kube::runtime::reflector::ObjectRef<k8s_openapi::api::apps::v1::DaemonSet>> + Send + Sync + 'static {
    move |_n| store.state().iter().map(|d| kube::runtime::reflector::ObjectRef::from(d.as_ref())).collect()
}
