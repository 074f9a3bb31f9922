//! Building [`kube::Client`]s: over a kubeconfig file (HTTPS), or over an in-process request
//! handler (the API server's own service, no TCP or TLS, still authenticated as a user).

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response};

/// A client over HTTPS configured from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, crate::Error> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| crate::Error::Config(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| crate::Error::Config(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}

/// A client whose requests are answered by `handler` in this process.
///
/// `handler` is typically the API server's request entry point with a fixed user, so the
/// controllers skip loopback TCP and TLS but still go through authentication, validation and
/// admission like every other client.
pub fn in_process_client<H, Fut, B>(handler: H) -> kube::Client
where
    H: Fn(Request<kube::client::Body>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    kube::Client::new(svc, "default")
}
