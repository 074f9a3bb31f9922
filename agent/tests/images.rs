//! Image pulls against a real `docker-registry` on loopback, through the `docker.io` mirror,
//! with real images built from Debian packages, and hostile images that must be refused.
//! Needs `docker-registry`, `skopeo`, `busybox-static` and `nginx-light`; some checks need root.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use skiff_agent::image::{ImageError, ImageService, PullPolicy, PullSecrets, UnpackError};
use skiff_tests::images::{self, Registry};

fn service(data: &Path, registry: &Registry) -> ImageService {
    ImageService::open(data, vec![registry.mirror_arg().parse().unwrap()]).unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

fn tmp_is_empty(svc: &ImageService) -> bool {
    std::fs::read_dir(svc.root().join("tmp")).unwrap().count() == 0
}

/// Mount the image's layers with overlayfs (plus a scratch upper dir) and call `f` with the
/// merged root.
fn with_merged<T>(lower: &[std::path::PathBuf], f: impl FnOnce(&Path) -> T) -> T {
    let rw = tempfile::tempdir().unwrap();
    let (upper, work) = (rw.path().join("upper"), rw.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let merged = tempfile::tempdir().unwrap();
    let lowerdir: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(merged.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount overlay {opts}");
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(merged.path())));
    let _ = Command::new("umount").arg(merged.path()).status();
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Run `cmd` chrooted in the image's merged root.
fn run_in_image(lower: &[std::path::PathBuf], cmd: &[&str]) -> std::process::Output {
    with_merged(lower, |root| {
        Command::new("chroot").arg(root).args(cmd).output().unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_busybox_and_nginx_through_the_mirror() {
    let registry = Registry::start();
    registry.push(&images::busybox_image(), "library/busybox:latest");
    let nginx = images::nginx_image();
    registry.push(&nginx, "library/nginx:latest");

    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    let none = PullSecrets::none();

    let started = Instant::now();
    let got = svc
        .ensure("nginx", PullPolicy::IfNotPresent, &none)
        .await
        .unwrap();
    let pull_time = started.elapsed();
    assert!(got.pulled);
    let info = got.info;
    assert_eq!(info.reference, "docker.io/library/nginx:latest");
    assert_eq!(info.manifest_digest, nginx.manifest_digest);
    assert_eq!(info.config_digest, nginx.config_digest);
    assert_eq!(info.layers, nginx.diff_ids);
    assert_eq!(
        info.image_id(),
        format!("docker.io/library/nginx@{}", nginx.manifest_digest)
    );
    assert_eq!(info.config.cmd, ["nginx", "-g", "daemon off;"]);
    assert_eq!(info.config.stop_signal.as_deref(), Some("SIGQUIT"));
    assert!(info.config.env.iter().any(|e| e.starts_with("PATH=")));

    let lower = svc.rootfs(&info).unwrap();
    assert_eq!(lower.len(), 2);
    assert!(lower[0].join("usr/sbin/nginx").is_file(), "top layer first");
    assert!(lower[1].join("lib64/ld-linux-x86-64.so.2").is_file());
    assert!(tmp_is_empty(&svc));
    let usage = svc.usage_bytes().unwrap();
    eprintln!(
        "figures: nginx pull {:?} ({} bytes compressed), store {} bytes",
        pull_time, info.size, usage
    );

    // IfNotPresent again: no pull. Always: resolves, but layers are already there.
    let again = svc
        .ensure(
            "docker.io/library/nginx:latest",
            PullPolicy::IfNotPresent,
            &none,
        )
        .await
        .unwrap();
    assert!(!again.pulled);
    assert_eq!(again.info.digest, info.digest);
    let always = svc
        .ensure("nginx:latest", PullPolicy::Always, &none)
        .await
        .unwrap();
    assert!(always.pulled);
    assert_eq!(always.info.layers, info.layers);

    // Concurrent pulls of one image share the work and agree.
    let (a, b) = tokio::join!(
        svc.pull("busybox", &none),
        svc.pull("busybox:latest", &none)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.digest, b.digest);
    assert!(tmp_is_empty(&svc));

    if is_root() {
        let out = run_in_image(
            &svc.rootfs(&a).unwrap(),
            &["/bin/sh", "-c", "echo hi from $0"],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from /bin/sh\n");
        let out = run_in_image(&lower, &["/usr/sbin/nginx", "-t"]);
        assert!(
            out.status.success(),
            "nginx -t in the image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // GC: with nginx in use and a target of zero, only busybox goes.
    let in_use: HashSet<String> = [info.image_id()].into();
    let report = svc.gc(&in_use, 0).await.unwrap();
    assert_eq!(report.removed, vec!["docker.io/library/busybox:latest"]);
    assert!(report.bytes_after < report.bytes_before);
    assert!(svc.get("busybox").unwrap().is_none());
    assert!(svc.get("nginx").unwrap().is_some());
    assert!(svc.rootfs(&info).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_images_and_never_policy_are_errors() {
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    let none = PullSecrets::none();

    let err = svc
        .ensure("does-not-exist:1.0", PullPolicy::IfNotPresent, &none)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err:?}");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.message().contains("not found"), "{}", err.message());

    let err = svc
        .ensure("busybox", PullPolicy::Never, &none)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImageNeverPull");

    let err = svc
        .ensure("Not/A/Valid:Name!", PullPolicy::Always, &none)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_and_nothing_escapes() {
    let registry = Registry::start();
    let outside = tempfile::tempdir().unwrap();
    let sentinel = outside.path().join("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), b"original").unwrap();

    registry.push(
        &images::hostile_dotdot_image(&sentinel),
        "hostile/dotdot:latest",
    );
    registry.push(
        &images::hostile_symlink_image(&sentinel),
        "hostile/symlink:latest",
    );
    registry.push(
        &images::hostile_hardlink_image(&sentinel),
        "hostile/hardlink:latest",
    );

    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    for (image, entry) in [
        ("hostile/dotdot", "dotdot-escape"),
        ("hostile/symlink", "escape/symlink-escape"),
        ("hostile/hardlink", "stolen"),
    ] {
        let err = svc
            .ensure(image, PullPolicy::Always, &PullSecrets::none())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "ErrImagePull");
        match &err {
            ImageError::Layer {
                source: UnpackError::Refused { entry: e, .. },
                ..
            } => assert!(e.ends_with(entry), "{image}: refused {e:?}"),
            other => panic!("{image}: expected a refused layer, got {other:?}"),
        }
        eprintln!("{image}: {}", err.message());
        assert!(svc.get(image).unwrap().is_none());
        assert!(tmp_is_empty(&svc));
    }
    let names: Vec<_> = std::fs::read_dir(&sentinel)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep")]);
    assert_eq!(std::fs::read(sentinel.join("keep")).unwrap(), b"original");
    let layers = std::fs::read_dir(svc.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "no hostile layer was committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digests_are_refused() {
    let registry = Registry::start();
    let layer_bad = images::tiny_image("layer will be corrupted");
    registry.push(&layer_bad, "test/badlayer:latest");
    registry.corrupt_blob(&layer_bad.layer_digests[0]);
    let manifest_bad = images::tiny_image("manifest will be corrupted");
    registry.push(&manifest_bad, "test/badmanifest:latest");
    registry.corrupt_blob(&manifest_bad.manifest_digest);
    let config_bad = images::tiny_image("config will be corrupted");
    registry.push(&config_bad, "test/badconfig:latest");
    registry.corrupt_blob(&config_bad.config_digest);

    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    for (image, what, expected) in [
        ("test/badlayer", "blob", &layer_bad.layer_digests[0]),
        (
            "test/badmanifest",
            "manifest",
            &manifest_bad.manifest_digest,
        ),
        ("test/badconfig", "blob", &config_bad.config_digest),
    ] {
        let err = svc
            .ensure(image, PullPolicy::Always, &PullSecrets::none())
            .await
            .unwrap_err();
        eprintln!("{image}: {}", err.message());
        match &err {
            ImageError::DigestMismatch {
                what: w,
                expected: e,
                actual,
            } => {
                assert_eq!(*w, what, "{image}");
                assert_eq!(e, expected, "{image}");
                assert_ne!(actual, expected);
            }
            other => panic!("{image}: expected a digest mismatch, got {other:?}"),
        }
        assert_eq!(err.reason(), "ErrImagePull");
        assert!(svc.get(image).unwrap().is_none());
        assert!(tmp_is_empty(&svc));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn image_index_resolves_to_linux_amd64() {
    let registry = Registry::start();
    let image = images::ImageBuilder::new()
        .layer(images::Layer::new().file("arch.txt", b"multi", 0o644))
        .build_multi_arch();
    registry.push(&image, "library/multi:latest");
    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    let info = svc.pull("multi", &PullSecrets::none()).await.unwrap();
    let index = image.index_digest.clone().unwrap();
    assert_eq!(info.digest, index, "the reference resolved to the index");
    assert_eq!(info.manifest_digest, image.manifest_digest, "amd64 chosen");
    assert_eq!(info.config_digest, image.config_digest);
    assert_eq!(info.image_id(), format!("docker.io/library/multi@{index}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_secrets_authenticate_to_the_registry() {
    let registry = Registry::start_with_auth("puller", "s3cret-pw");
    registry.push(&images::tiny_image("private"), "team/private:v1");
    let data = tempfile::tempdir().unwrap();
    // Not through a mirror: the registry is addressed by its own host:port.
    let insecure = format!("{0}=http://{0}", registry.host);
    let svc = ImageService::open(data.path(), vec![insecure.parse().unwrap()]).unwrap();
    let image = format!("{}/team/private:v1", registry.host);

    let err = svc.pull(&image, &PullSecrets::none()).await.unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    eprintln!("anonymous: {}", err.message());

    let config = format!(
        r#"{{"auths":{{"{}":{{"username":"puller","password":"s3cret-pw"}}}}}}"#,
        registry.host
    );
    let secrets = PullSecrets::from_docker_config(config.as_bytes()).unwrap();
    let info = svc.pull(&image, &secrets).await.unwrap();
    assert_eq!(info.reference, image);
    let lower = svc.rootfs(&info).unwrap();
    assert_eq!(
        std::fs::read(lower[0].join("hello.txt")).unwrap(),
        b"private"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_layers_and_whiteouts_across_layers() {
    let registry = Registry::start();
    let image = images::ImageBuilder::new()
        .zstd()
        .layer(
            images::Layer::new()
                .file("etc/app.conf", b"v1", 0o644)
                .file("etc/obsolete.conf", b"old", 0o644),
        )
        .layer(
            images::Layer::new()
                .file("etc/app.conf", b"v2", 0o644)
                .file("etc/.wh.obsolete.conf", b"", 0o644),
        )
        .build();
    registry.push(&image, "library/zstd:1");
    let data = tempfile::tempdir().unwrap();
    let svc = service(data.path(), &registry);
    let info = svc.pull("zstd:1", &PullSecrets::none()).await.unwrap();
    assert_eq!(info.layers, image.diff_ids);
    let lower = svc.rootfs(&info).unwrap();
    assert_eq!(std::fs::read(lower[0].join("etc/app.conf")).unwrap(), b"v2");
    assert_eq!(std::fs::read(lower[1].join("etc/app.conf")).unwrap(), b"v1");
    if is_root() {
        let (conf, obsolete) = with_merged(&lower, |root| {
            (
                std::fs::read(root.join("etc/app.conf")).unwrap(),
                root.join("etc/obsolete.conf").exists(),
            )
        });
        assert_eq!(conf, b"v2");
        assert!(!obsolete, "whiteout hides the lower layer's file");
    }
}
