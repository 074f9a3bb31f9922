//! endpoints controller (placeholder until written).

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::runtime::{Ctx, Error};

pub async fn reconcile(_obj: Arc<k8s_openapi::api::core::v1::Service>, _ctx: Arc<Ctx>) -> Result<Action, Error> {
    Ok(Action::await_change())
}

pub fn pod_to_services(
    store: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
) -> impl Fn(Arc<k8s_openapi::api::core::v1::Pod>) -> Vec<kube::runtime::reflector::ObjectRef<k8s_openapi::api::core::v1::Service>> + Send + Sync + 'static {
    move |p| {
        let ns = p.metadata.namespace.clone();
        store
            .state()
            .iter()
            .filter(|s| s.metadata.namespace == ns)
            .map(|s| kube::runtime::reflector::ObjectRef::from(s.as_ref()))
            .collect()
    }
}
