//! The API server alone, for profiling its request path without linking the rest of `skiff`:
//! accepts the arguments `api-bench` passes to `skiff server`
//! (`server --data-dir DIR --listen ADDR --no-controllers`), with the same global allocator.
//!
//! ```sh
//! cargo build --release -p skiff-apiserver --example api_only
//! target/release/api-bench --skiff target/release/examples/api_only --quick
//! ```

use std::net::SocketAddr;

/// The same allocator as the `skiff` binary, so that profiles match the product.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut data_dir = None;
    let mut listen: SocketAddr = "127.0.0.1:6443".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "server" | "--no-controllers" => {}
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--listen" => {
                listen = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen needs an address"))?
                    .parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let data_dir = data_dir.ok_or_else(|| anyhow::anyhow!("--data-dir is required"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let opts = skiff_apiserver::ServerOptions::new(data_dir, listen);
        let server = skiff_apiserver::Server::start(opts).await?;
        server
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        Ok(())
    })
}
