//! etcd's own put rate, the yardstick: plain gRPC puts (`etcd-client`) of values as large as a
//! stored pod, under keys shaped like the real API server's, on one shared channel.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::Client;

use crate::load::{self, Phase};

/// Connect to `endpoint`, retrying for at most `limit` while etcd starts.
pub async fn connect(endpoint: &str, limit: Duration) -> Result<Client> {
    let deadline = Instant::now() + limit;
    loop {
        let attempt = async {
            let mut c = Client::connect([endpoint], None).await?;
            c.status().await?;
            Ok::<_, etcd_client::Error>(c)
        };
        match attempt.await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("etcd at {endpoint} not ready"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A value of exactly `len` bytes that is not trivially compressible by accident of zeros.
pub fn value(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect()
}

/// `count` puts of `value_len`-byte values under fresh keys `{prefix}{i}`.
pub async fn put_rate(
    client: &Client,
    prefix: &str,
    count: usize,
    value_len: usize,
    concurrency: usize,
    limit: Duration,
) -> Phase {
    let kv = client.kv_client();
    let value = value(value_len);
    let prefix = prefix.to_owned();
    load::run(count, concurrency, limit, move |i| {
        let mut kv = kv.clone();
        let key = format!("{prefix}{i:05}");
        let value = value.clone();
        async move { kv.put(key, value, None).await.map(drop) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_has_the_requested_length() {
        assert_eq!(value(0).len(), 0);
        assert_eq!(value(1500).len(), 1500);
        assert!(value(100).iter().all(u8::is_ascii_alphanumeric));
    }
}
