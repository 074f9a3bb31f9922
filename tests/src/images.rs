//! Image fixtures: real OCI images built from the host's Debian packages, and a real registry.
//!
//! [`Registry`] runs Debian's `docker-registry` on a free loopback port with a temporary
//! storage directory and kills it when dropped. [`ImageBuilder`] writes OCI image layouts
//! (our own code: tar + gzip + sha256), and [`Registry::push`] copies them in with `skopeo`.
//! [`busybox_image`] (from `busybox-static`) and [`nginx_image`] (from `nginx-light` plus the
//! libraries `ldd` lists) are the standard images; the `hostile_*` builders and
//! [`Registry::corrupt_blob`] make the images the agent must refuse.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A fixed mtime so images are reproducible byte for byte.
const MTIME: u64 = 1_700_000_000;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A running `docker-registry` on 127.0.0.1.
pub struct Registry {
    child: Option<Child>,
    storage: PathBuf,
    _dir: tempfile::TempDir,
    /// `IP:PORT` (`127.0.0.1:PORT` unless started with [`Registry::start_on`]).
    pub host: String,
    /// `user:password` when the registry requires auth.
    creds: Option<String>,
}

impl Registry {
    /// Start a registry with empty storage and wait until it answers `/v2/`.
    pub fn start() -> Self {
        Self::start_inner(None, "127.0.0.1")
    }

    /// Start a registry listening on `ip` (e.g. a bridge address that agents in their own
    /// network namespaces can reach), optionally with basic auth (`user`, `password`).
    pub fn start_on(ip: &str, auth: Option<(&str, &str)>) -> Self {
        Self::start_inner(auth, ip)
    }

    /// Start a registry that requires HTTP basic auth with `user`/`password` (htpasswd file
    /// made with `htpasswd -B`, Debian's `apache2-utils`).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)), "127.0.0.1")
    }

    fn start_inner(auth: Option<(&str, &str)>, ip: &str) -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("storage dir");
        let port = TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("{ip}:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            storage.display()
        );
        let mut creds = None;
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-nbB", user, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("htpasswd file");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                file.display()
            ));
            creds = Some(format!("{user}:{password}"));
        }
        std::fs::write(&config, yaml).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let mut r = Self {
            child: Some(child),
            storage,
            _dir: dir,
            host,
            creds,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("docker-registry exited: {status}: {}", self.log());
            }
            if self
                .get("/v2/")
                // 401 is an answer too, from a registry that requires auth.
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 401"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not become ready: {}", self.log());
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A plain HTTP GET; the whole response (status line, headers, body) as text.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(&self.host).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// `docker.io=http://127.0.0.1:PORT`: the agent's `--registry-mirror` value that serves
    /// Docker Hub names from this registry.
    pub fn mirror_arg(&self) -> String {
        format!("docker.io=http://{}", self.host)
    }

    /// Push `image` as `name` (`library/nginx:latest`) with `skopeo copy` (`--all`, so a
    /// multi-arch image keeps its index).
    pub fn push(&self, image: &OciImage, name: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--all",
            "--insecure-policy",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = &self.creds {
            cmd.arg("--dest-creds").arg(c);
        }
        let out = cmd
            .arg(format!("oci:{}:{}", image.layout.display(), image.tag))
            .arg(format!("docker://{}/{name}", self.host))
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Overwrite a stored blob's bytes (same length, so only its digest check can catch it).
    /// The registry serves stored data as-is, which makes a blob that lies about its digest.
    pub fn corrupt_blob(&self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = self
            .storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut bytes = std::fs::read(&path).expect("stored blob");
        let last = bytes.len() - 1;
        bytes[last / 2] ^= 0xff;
        std::fs::write(&path, bytes).expect("rewrite blob");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One layer's uncompressed tar, built entry by entry.
pub struct Layer {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Directory entries for every missing parent of `path`.
    fn parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            prefix.push_str(p);
            prefix.push('/');
            if self.dirs.insert(prefix.clone()) {
                let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
                self.tar
                    .append_data(&mut h, &prefix, &[][..])
                    .expect("dir entry");
            }
        }
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.parents(path);
        let name = format!("{}/", path.trim_matches('/'));
        if self.dirs.insert(name.clone()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, 0);
            self.tar.append_data(&mut h, &name, &[][..]).expect("dir");
        }
        self
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        self.parents(path);
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data).expect("file");
        self
    }

    /// A host file's bytes (symlinks resolved) at `path`, keeping its permission bits.
    pub fn host_file(self, host: &Path, path: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        let mode = std::fs::metadata(host).expect("stat").permissions().mode() & 0o7777;
        self.file(path, &data, mode)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.parents(path);
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target).expect("symlink");
        self
    }

    /// An entry whose name is written raw, unchecked: for hostile layers (`../x`).
    pub fn raw(
        mut self,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&str>,
    ) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.tar.append(&h, data).expect("raw entry");
        self
    }

    pub fn into_tar(self) -> Vec<u8> {
        self.tar.into_inner().expect("finish tar")
    }
}

/// An image being assembled: layers bottom first plus the runtime config.
pub struct ImageBuilder {
    layers: Vec<Vec<u8>>,
    config: serde_json::Value,
    zstd: bool,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self {
            layers: Vec::new(),
            config: serde_json::json!({
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            }),
            zstd: false,
        }
    }

    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer.into_tar());
        self
    }

    /// Compress layers with zstd instead of gzip.
    pub fn zstd(mut self) -> Self {
        self.zstd = true;
        self
    }

    /// Set one field of the image config's `config` object (`Cmd`, `Entrypoint`, ...).
    pub fn config(mut self, key: &str, value: serde_json::Value) -> Self {
        self.config[key] = value;
        self
    }

    /// Write an OCI image layout (blobs, `index.json`, `oci-layout`) tagged `latest`.
    pub fn build(self) -> OciImage {
        self.write(false)
    }

    /// Like [`ImageBuilder::build`], but `latest` names an image index listing an arm64
    /// manifest first and the amd64 one second, so a puller must choose by platform.
    pub fn build_multi_arch(self) -> OciImage {
        self.write(true)
    }

    fn write(self, multi_arch: bool) -> OciImage {
        let dir = tempfile::tempdir().expect("layout dir");
        let layout = dir.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("blobs dir");
        let put = |bytes: &[u8]| -> String {
            let d = sha256(bytes);
            std::fs::write(blobs.join(&d["sha256:".len()..]), bytes).expect("blob");
            d
        };
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for tar in &self.layers {
            let (blob, media_type) = if self.zstd {
                let z = zstd::encode_all(&tar[..], 3).expect("zstd");
                (z, OCI_LAYER_ZSTD)
            } else {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).expect("gzip");
                (gz.finish().expect("gzip"), OCI_LAYER_GZIP)
            };
            let d = put(&blob);
            diff_ids.push(sha256(tar));
            layer_descs.push(serde_json::json!({
                "mediaType": media_type, "digest": d, "size": blob.len()
            }));
            layer_digests.push(d);
        }
        // One manifest per architecture: (manifest bytes, manifest digest, config digest).
        let manifest_for = |arch: &str| {
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": arch,
                "os": "linux",
                "created": "2023-11-14T22:13:20Z",
                "config": self.config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .expect("config json");
            let config_digest = put(&config);
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": layer_descs,
            }))
            .expect("manifest json");
            let digest = put(&manifest);
            (manifest.len(), digest, config_digest)
        };
        let (manifest_len, manifest_digest, config_digest) = manifest_for("amd64");
        let entry = |len: usize, digest: &str, arch: &str| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": len,
                "platform": {"architecture": arch, "os": "linux"}
            })
        };
        let ref_name = serde_json::json!({"org.opencontainers.image.ref.name": "latest"});
        let mut index_digest = None;
        let top = if multi_arch {
            let (arm_len, arm_digest, _) = manifest_for("arm64");
            let nested = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    entry(arm_len, &arm_digest, "arm64"),
                    entry(manifest_len, &manifest_digest, "amd64"),
                ]
            }))
            .expect("index json");
            let d = put(&nested);
            index_digest = Some(d.clone());
            serde_json::json!({
                "mediaType": OCI_INDEX, "digest": d, "size": nested.len(),
                "annotations": ref_name
            })
        } else {
            let mut e = entry(manifest_len, &manifest_digest, "amd64");
            e["annotations"] = ref_name;
            e
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        OciImage {
            _dir: dir,
            layout,
            tag: "latest".into(),
            manifest_digest,
            index_digest,
            config_digest,
            layer_digests,
            diff_ids,
        }
    }
}

/// An OCI image layout on disk.
pub struct OciImage {
    _dir: tempfile::TempDir,
    pub layout: PathBuf,
    pub tag: String,
    /// The linux/amd64 image manifest.
    pub manifest_digest: String,
    /// The image index `latest` names, for multi-arch images.
    pub index_digest: Option<String>,
    pub config_digest: String,
    /// Compressed layer digests, bottom first.
    pub layer_digests: Vec<String>,
    pub diff_ids: Vec<String>,
}

fn base_files(layer: Layer) -> Layer {
    layer
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("dev", 0o755)
        .dir("run", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            0o644,
        )
        .file(
            "etc/group",
            b"root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n",
            0o644,
        )
}

/// A busybox image from Debian's `busybox-static`: `/bin/busybox` and a symlink per applet.
pub fn busybox_image() -> OciImage {
    let bin = Path::new("/bin/busybox");
    let list = Command::new(bin)
        .arg("--list")
        .output()
        .expect("busybox --list (apt-get install busybox-static)");
    let mut layer = base_files(Layer::new()).host_file(bin, "bin/busybox");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    ImageBuilder::new()
        .layer(layer)
        .config("Cmd", serde_json::json!(["sh"]))
        .build()
}

/// The minimal nginx.conf of the nginx image: logs go to stdout/stderr.
pub const NGINX_CONF: &str = "user nobody nogroup;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 64; }
http {
    access_log /dev/stdout;
    default_type text/html;
    server {
        listen 80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
";

/// The page the nginx image serves at `/`.
pub const NGINX_INDEX: &str = "<h1>Welcome to skiff nginx</h1>\n";

/// An nginx image from Debian's `nginx-light`: the binary, every library `ldd` lists (and the
/// dynamic loader) at the same paths, a minimal `/etc/passwd`, and an nginx.conf logging to
/// stdout/stderr. Two layers: the libraries below, nginx above.
pub fn nginx_image() -> OciImage {
    let nginx = Path::new("/usr/sbin/nginx");
    let ldd = Command::new("ldd")
        .arg(nginx)
        .output()
        .expect("ldd /usr/sbin/nginx (apt-get install nginx-light)");
    assert!(
        ldd.status.success(),
        "ldd failed: is nginx-light installed?"
    );
    let mut libs = base_files(Layer::new());
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs = libs.host_file(Path::new(p), p.trim_start_matches('/'));
        }
    }
    let app = Layer::new()
        .host_file(nginx, "usr/sbin/nginx")
        .file("etc/nginx/nginx.conf", NGINX_CONF.as_bytes(), 0o644)
        .file(
            "usr/share/nginx/html/index.html",
            NGINX_INDEX.as_bytes(),
            0o644,
        )
        .dir("var/lib/nginx", 0o755)
        .dir("var/log/nginx", 0o755);
    ImageBuilder::new()
        .layer(libs)
        .layer(app)
        .config("Cmd", serde_json::json!(["nginx", "-g", "daemon off;"]))
        .config("ExposedPorts", serde_json::json!({"80/tcp": {}}))
        .config("StopSignal", serde_json::json!("SIGQUIT"))
        .build()
}

/// A layer that writes `../../..{sentinel}/dotdot-escape`: must be refused.
pub fn hostile_dotdot_image(sentinel: &Path) -> OciImage {
    let name = format!(
        "../../../../../../../..{}/dotdot-escape",
        sentinel.display()
    );
    ImageBuilder::new()
        .layer(Layer::new().raw(&name, tar::EntryType::Regular, b"pwned", None))
        .build()
}

/// A layer that plants a symlink to `sentinel` and writes a file through it: must be refused.
pub fn hostile_symlink_image(sentinel: &Path) -> OciImage {
    let target = sentinel.display().to_string();
    ImageBuilder::new()
        .layer(Layer::new().symlink("escape", &target).raw(
            "escape/symlink-escape",
            tar::EntryType::Regular,
            b"pwned",
            None,
        ))
        .build()
}

/// A layer whose hard link names a file outside the layer: must be refused.
pub fn hostile_hardlink_image(sentinel: &Path) -> OciImage {
    let target = format!("../../../../../../../..{}/keep", sentinel.display());
    ImageBuilder::new()
        .layer(Layer::new().raw("stolen", tar::EntryType::Link, b"", Some(&target)))
        .build()
}

/// A small valid image for the corrupted-digest cases.
pub fn tiny_image(content: &str) -> OciImage {
    ImageBuilder::new()
        .layer(Layer::new().file("hello.txt", content.as_bytes(), 0o644))
        .build()
}
