//! deployment controller (placeholder until written).

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::runtime::{Ctx, Error};

pub async fn reconcile(_obj: Arc<k8s_openapi::api::apps::v1::Deployment>, _ctx: Arc<Ctx>) -> Result<Action, Error> {
    Ok(Action::await_change())
}
