//! nodelifecycle (placeholder until written).

use std::sync::Arc;

use crate::runtime::Ctx;

pub async fn run(_ctx: Arc<Ctx>) {}
