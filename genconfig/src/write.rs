//! Writing a freshly generated cluster into an output directory.

use std::path::{Path, PathBuf};

use skiff_machine::Role;

use crate::secrets::{ClusterSecrets, GenError, NodeSpec};

/// Inputs of `skiff gen config`.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub cluster_name: String,
    /// `https://HOST:6443`.
    pub endpoint: String,
    /// Overwrite files that already exist in the output directory.
    pub force: bool,
}

/// The files written, by role.
#[derive(Debug, Clone)]
pub struct Written {
    pub secrets: PathBuf,
    pub signing_public_key: PathBuf,
    pub controlplane: PathBuf,
    pub worker: PathBuf,
    pub kubeconfig: PathBuf,
    pub skiffconfig: PathBuf,
}

impl Written {
    /// Every path, in the order written.
    pub fn all(&self) -> [&Path; 6] {
        [
            &self.secrets,
            &self.signing_public_key,
            &self.controlplane,
            &self.worker,
            &self.kubeconfig,
            &self.skiffconfig,
        ]
    }
}

/// Generates a cluster and writes `secrets.yaml`, `signing.pub`, `controlplane.yaml`,
/// `worker.yaml`, `kubeconfig` and `skiffconfig` into `out` (created 0700). Secret files are
/// 0600. Existing files are refused unless `force`.
pub fn gen_config(opts: &GenOptions, out: &Path) -> Result<(ClusterSecrets, Written), GenError> {
    let secrets = ClusterSecrets::generate(&opts.cluster_name, &opts.endpoint)?;
    let written = Written {
        secrets: out.join("secrets.yaml"),
        signing_public_key: out.join("signing.pub"),
        controlplane: out.join("controlplane.yaml"),
        worker: out.join("worker.yaml"),
        kubeconfig: out.join("kubeconfig"),
        skiffconfig: out.join("skiffconfig"),
    };
    if !opts.force
        && let Some(existing) = written.all().into_iter().find(|p| p.exists())
    {
        return Err(GenError::Exists {
            path: existing.display().to_string(),
        });
    }
    create_private_dir(out)?;
    let host = endpoint_host(secrets.endpoint.as_str());
    let cp_name = format!("{}-cp-1", secrets.name);
    let worker_name = format!("{}-worker", secrets.name);
    let hostname = |name: String| {
        name.parse()
            .map_err(|e: skiff_machine::InvalidValue| GenError::Value {
                what: "hostname",
                message: e.to_string(),
            })
    };
    let cp = secrets.signed_config(&NodeSpec::new(Role::ControlPlane, hostname(cp_name)?))?;
    let worker = secrets.signed_config(&NodeSpec::new(Role::Worker, hostname(worker_name)?))?;
    write_private(&written.secrets, secrets.to_yaml()?.as_bytes())?;
    write_file(
        &written.signing_public_key,
        secrets.public_key().to_pem().as_bytes(),
    )?;
    write_private(&written.controlplane, &cp)?;
    write_private(&written.worker, &worker)?;
    let kubeconfig = secrets.admin_kubeconfig(secrets.endpoint.as_str())?;
    write_private(&written.kubeconfig, kubeconfig.to_yaml().as_bytes())?;
    let skiffconfig = secrets.skiffconfig(&[host])?;
    let skiffconfig = serde_yaml::to_string(&skiffconfig).map_err(GenError::SecretsYaml)?;
    write_private(&written.skiffconfig, skiffconfig.as_bytes())?;
    Ok((secrets, written))
}

/// `host` of `https://host:port`.
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint.trim_start_matches("https://");
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(inside) = authority.strip_prefix('[') {
        return inside.split(']').next().unwrap_or(inside).to_owned();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_owned()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> GenError + '_ {
    move |source| GenError::Write {
        path: path.display().to_string(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), GenError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), GenError> {
    skiff_pki::write_private(path, contents).map_err(GenError::Pki)
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), GenError> {
    std::fs::write(path, contents).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_every_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cluster");
        let opts = GenOptions {
            cluster_name: "demo".into(),
            endpoint: "https://10.5.0.10:6443".into(),
            force: false,
        };
        let (secrets, written) = gen_config(&opts, &out).unwrap();
        for path in written.all() {
            assert!(path.is_file(), "{}", path.display());
        }
        let mode = std::fs::metadata(&written.secrets)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let cp = std::fs::read(&written.controlplane).unwrap();
        let public = skiff_machine::PublicKey::parse(
            &std::fs::read_to_string(&written.signing_public_key).unwrap(),
        )
        .unwrap();
        assert_eq!(public, secrets.public_key());
        let v = skiff_machine::verify(&cp, &[public]).unwrap();
        assert_eq!(v.config.machine.hostname.as_str(), "demo-cp-1");
        let sc: crate::SkiffConfig =
            serde_yaml::from_str(&std::fs::read_to_string(&written.skiffconfig).unwrap()).unwrap();
        assert_eq!(sc.contexts["demo"].endpoints, vec!["10.5.0.10".to_owned()]);

        let err = gen_config(&opts, &out).unwrap_err();
        assert!(matches!(err, GenError::Exists { .. }), "{err}");
        let forced = GenOptions {
            force: true,
            ..opts
        };
        let (again, _) = gen_config(&forced, &out).unwrap();
        assert_ne!(again.public_key(), secrets.public_key());
    }

    #[test]
    fn endpoint_hosts() {
        assert_eq!(endpoint_host("https://10.0.0.1:6443"), "10.0.0.1");
        assert_eq!(endpoint_host("https://api.example.com"), "api.example.com");
        assert_eq!(endpoint_host("https://[fd00::1]:6443"), "fd00::1");
    }
}
