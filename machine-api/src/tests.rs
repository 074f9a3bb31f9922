//! The server and client together, in process, over real mutual TLS on loopback, with a fake
//! node behind the server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_genconfig::{ClusterSecrets, NodeSpec};
use skiff_machine::{PublicKey, Role, VerifiedConfig};
use skiff_pki::{CertificateAuthority, CertifiedKey};
use tokio_stream::StreamExt;

use crate::node::{
    Generations, LogChunk, NodeControl, NodeError, NodeVersion, Power, ServiceInfo, ServiceState,
    Stored,
};
use crate::proto;
use crate::{Client, ClientError, Credentials};

#[derive(Default)]
struct Fake {
    role: String,
    trusted: Vec<PublicKey>,
    applied: Option<u64>,
    log: Mutex<Vec<String>>,
    stored: Mutex<Option<Vec<u8>>>,
    power: Mutex<Vec<Power>>,
    reset: Mutex<bool>,
    kubeconfig: Option<Vec<u8>>,
    kmsg: PathBuf,
}

impl NodeControl for Fake {
    fn version(&self) -> NodeVersion {
        NodeVersion {
            skiff_version: "9.9.9".into(),
            kernel: "6.1.0-test".into(),
            hostname: "node-1".into(),
            role: self.role.clone(),
            config_generation: self.applied.unwrap_or(0),
            config_sha256: "ab".repeat(32),
            boot: vec![
                ("kernel".into(), Duration::ZERO),
                ("services".into(), Duration::from_millis(1500)),
            ],
        }
    }

    fn services(&self) -> Vec<ServiceInfo> {
        vec![ServiceInfo {
            name: "agent".into(),
            state: ServiceState::Running,
            restarts: 2,
            pid: Some(77),
        }]
    }

    fn log_lines(&self, service: &str, since: u64) -> Result<LogChunk, NodeError> {
        if service != "agent" {
            return Err(NodeError::NoSuchService(service.into()));
        }
        let lines = self.log.lock().unwrap();
        let skip = usize::try_from(since).unwrap().min(lines.len());
        Ok(LogChunk {
            first: since.min(u64::try_from(lines.len()).unwrap()),
            lines: lines[skip..].to_vec(),
        })
    }

    fn kmsg_path(&self) -> PathBuf {
        self.kmsg.clone()
    }

    fn power(&self, action: Power) -> Result<(), NodeError> {
        self.power.lock().unwrap().push(action);
        Ok(())
    }

    fn trusted_keys(&self) -> Vec<PublicKey> {
        self.trusted.clone()
    }

    fn generations(&self) -> Generations {
        Generations {
            applied: self.applied,
            pending: self
                .stored
                .lock()
                .unwrap()
                .as_deref()
                .and_then(crate::generation_of),
        }
    }

    fn store_config(&self, _: &VerifiedConfig, raw: &[u8]) -> Result<Stored, NodeError> {
        *self.stored.lock().unwrap() = Some(raw.to_vec());
        Ok(Stored {
            path: "/var/lib/skiff/machine/pending.yaml".into(),
            persistent: true,
        })
    }

    fn kubeconfig(&self) -> Result<Vec<u8>, NodeError> {
        self.kubeconfig
            .clone()
            .ok_or_else(|| NodeError::NotHere("this node is a worker".into()))
    }

    fn reset(&self) -> Result<(), NodeError> {
        *self.reset.lock().unwrap() = true;
        Ok(())
    }
}

struct Harness {
    secrets: ClusterSecrets,
    node: Arc<Fake>,
    addr: String,
    admin: Credentials,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn worker_config(secrets: &ClusterSecrets, generation: u64) -> Vec<u8> {
    let mut spec = NodeSpec::new(Role::Worker, "node-1".parse().unwrap());
    spec.generation = generation;
    secrets.signed_config(&spec).unwrap()
}

fn creds(ca: &CertificateAuthority, identity: CertifiedKey) -> Credentials {
    Credentials {
        ca_pem: ca.cert_pem().to_owned(),
        identity,
    }
}

async fn start() -> Harness {
    let secrets = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kmsg = dir.path().join("kmsg");
    std::fs::write(&kmsg, "6,1,1500000,-;first\n4,2,2000001,-;second\n").unwrap();
    let node = Arc::new(Fake {
        role: "worker".into(),
        trusted: vec![secrets.public_key()],
        applied: Some(2),
        log: Mutex::new(vec!["one".into(), "two".into(), "three".into()]),
        kmsg,
        ..Fake::default()
    });
    // The server uses the certificate a worker's config carries.
    let config = skiff_machine::verify(&worker_config(&secrets, 2), &[secrets.public_key()])
        .unwrap()
        .config;
    let identity = crate::node_identity(&config, &[]).unwrap();
    let tls = crate::server_config(&creds(&secrets.machine_ca, identity)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::serve(listener, tls, node.clone(), async move {
        let _ = stopped.await;
    }));
    let admin = secrets
        .machine_ca
        .issue_client("admin", &[crate::ADMIN_GROUP.to_owned()])
        .unwrap();
    let admin = creds(&secrets.machine_ca, admin);
    Harness {
        secrets,
        node,
        addr,
        admin,
        _dir: dir,
        _stop: stop,
    }
}

#[tokio::test]
async fn version_services_and_logs() {
    let h = start().await;
    let client = Client::connect(&h.addr, &h.admin).await.unwrap();
    let mut grpc = client.grpc.clone();
    let v = grpc
        .version(proto::VersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.skiff_version, "9.9.9");
    assert_eq!(v.role, "worker");
    assert_eq!(v.config_generation, 2);
    assert_eq!(v.boot.len(), 2);
    assert_eq!(v.boot[1].at_micros, 1_500_000);

    let s = grpc
        .services(proto::ServicesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.services.len(), 1);
    assert_eq!(
        (s.services[0].state.as_str(), s.services[0].pid),
        ("running", 77)
    );

    let lines = |tail, follow| proto::LogsRequest {
        service: "agent".into(),
        tail,
        follow,
    };
    let got: Vec<String> = grpc
        .logs(lines(2, false))
        .await
        .unwrap()
        .into_inner()
        .map(|l| l.unwrap().line)
        .collect()
        .await;
    assert_eq!(got, ["two", "three"]);

    // Following: the kept lines, then new ones as the node logs them.
    let mut stream = grpc.logs(lines(1, true)).await.unwrap().into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().line, "three");
    h.node.log.lock().unwrap().push("four".into());
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert_eq!(next.unwrap().unwrap().line, "four");

    let err = grpc
        .logs(proto::LogsRequest {
            service: "nope".into(),
            tail: 0,
            follow: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("no service named `nope`"));
}

#[tokio::test]
async fn dmesg_streams_kernel_records() {
    let h = start().await;
    let client = Client::connect(&h.addr, &h.admin).await.unwrap();
    let got: Vec<proto::KernelMessage> = client
        .grpc
        .clone()
        .dmesg(proto::DmesgRequest {
            follow: false,
            tail: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got.len(), 2);
    assert_eq!((got[1].priority, got[1].sequence), (4, 2));
    assert_eq!(
        crate::ctl::format_kernel_message(&got[1]),
        "[    2.000001] second"
    );
}

#[tokio::test]
async fn apply_config_verifies_before_storing() {
    let h = start().await;
    let client = Client::connect(&h.addr, &h.admin).await.unwrap();
    let mut grpc = client.grpc.clone();
    let apply = |config: Vec<u8>| proto::ApplyConfigRequest { config };

    // Tampered: one byte of the payload changed.
    let mut tampered = worker_config(&h.secrets, 3);
    let at = tampered.len() - 3;
    tampered[at] ^= 0x01;
    let err = grpc.apply_config(apply(tampered)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("config refused:"), "{err:?}");

    // Signed by another cluster's key.
    let other = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
    let err = grpc
        .apply_config(apply(worker_config(&other, 3)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("sign it with the cluster's key"));

    // Older than the applied generation 2.
    let err = grpc
        .apply_config(apply(worker_config(&h.secrets, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("refusing to roll back"), "{err:?}");

    // Turning the worker into a control plane.
    let cp = h
        .secrets
        .signed_config(&{
            let mut s = NodeSpec::new(Role::ControlPlane, "node-1".parse().unwrap());
            s.generation = 5;
            s
        })
        .unwrap();
    let err = grpc.apply_config(apply(cp)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("changes role only after"), "{err:?}");

    // Garbage that is not even a signed config.
    let err = grpc
        .apply_config(apply(b"hello".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(h.node.stored.lock().unwrap().is_none(), "nothing stored");

    // A good one.
    let good = worker_config(&h.secrets, 3);
    let reply = grpc
        .apply_config(apply(good.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.generation, 3);
    assert!(reply.persistent);
    assert!(reply.message.contains("reboot"), "{}", reply.message);
    assert_eq!(h.node.stored.lock().unwrap().as_deref(), Some(&good[..]));

    // Now pending generation 3 is the floor: 2 is refused even though it equals the applied.
    let err = grpc
        .apply_config(apply(worker_config(&h.secrets, 2)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let v = grpc
        .version(proto::VersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.pending_generation, 3);
}

#[tokio::test]
async fn power_reset_kubeconfig_and_upgrade() {
    let h = start().await;
    let client = Client::connect(&h.addr, &h.admin).await.unwrap();
    let mut grpc = client.grpc.clone();
    grpc.reboot(proto::PowerRequest {}).await.unwrap();
    grpc.shutdown(proto::PowerRequest {}).await.unwrap();
    assert_eq!(
        *h.node.power.lock().unwrap(),
        [Power::Reboot, Power::PowerOff]
    );
    grpc.reset(proto::ResetRequest {}).await.unwrap();
    assert!(*h.node.reset.lock().unwrap());
    let err = grpc
        .kubeconfig(proto::KubeconfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let err = grpc
        .upgrade(proto::UpgradeRequest { image: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("A/B"), "{err:?}");
    let e = client.status_error(&err);
    assert_eq!(e.exit_code(), 5);
}

#[tokio::test]
async fn readers_may_only_read() {
    let h = start().await;
    let reader = h
        .secrets
        .machine_ca
        .issue_client("viewer", &[crate::READER_GROUP.to_owned()])
        .unwrap();
    let client = Client::connect(&h.addr, &creds(&h.secrets.machine_ca, reader))
        .await
        .unwrap();
    let mut grpc = client.grpc.clone();
    grpc.version(proto::VersionRequest {}).await.unwrap();
    let err = grpc.reboot(proto::PowerRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("`viewer` is not in `os:admin`"));
    assert!(h.node.power.lock().unwrap().is_empty());

    let nobody = h.secrets.machine_ca.issue_client("nobody", &[]).unwrap();
    let client = Client::connect(&h.addr, &creds(&h.secrets.machine_ca, nobody))
        .await
        .unwrap();
    let err = client
        .grpc
        .clone()
        .version(proto::VersionRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_client_from_another_ca_is_refused() {
    let h = start().await;
    let rogue = CertificateAuthority::generate("skiff-machine-ca").unwrap();
    let cert = rogue
        .issue_client("mallory", &[crate::ADMIN_GROUP.to_owned()])
        .unwrap();
    // It trusts the real CA (so the server passes its check) but presents a foreign cert.
    let creds = Credentials {
        ca_pem: h.secrets.machine_ca.cert_pem().to_owned(),
        identity: cert,
    };
    let result = match Client::connect(&h.addr, &creds).await {
        Err(e) => Err(e),
        Ok(client) => client
            .grpc
            .clone()
            .version(proto::VersionRequest {})
            .await
            .map(|_| ())
            .map_err(|s| client.status_error(&s)),
    };
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 4);
    assert!(
        err.to_string()
            .contains("does not accept this client certificate"),
        "{err}"
    );
    assert!(h.node.power.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_server_from_another_cluster_is_not_trusted() {
    let h = start().await;
    let other = ClusterSecrets::generate("other", "https://10.0.0.1:6443").unwrap();
    let admin = other
        .machine_ca
        .issue_client("admin", &[crate::ADMIN_GROUP.to_owned()])
        .unwrap();
    let err = Client::connect(&h.addr, &creds(&other.machine_ca, admin))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("not from this cluster"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let secrets = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
    let admin = secrets.machine_ca.issue_client("a", &[]).unwrap();
    let err = Client::connect(&addr, &creds(&secrets.machine_ca, admin))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot reach {addr}: ")) && text.contains("refused"),
        "{text}"
    );
}
