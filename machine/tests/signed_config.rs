//! End-to-end behaviour of signed configs through the public API: what PID 1 sees.

use skiff_machine::{
    ConfigError, MachineConfig, Role, SignatureError, SigningKey, check_generation, sign, verify,
};

const CONTROLPLANE: &str = include_str!("data/controlplane.yaml");
const WORKER: &str = include_str!("data/worker.yaml");

#[test]
fn example_files_parse_and_validate() {
    let cp = MachineConfig::from_yaml(CONTROLPLANE).unwrap();
    assert_eq!(cp.role, Role::ControlPlane);
    assert_eq!(cp.machine.hostname.as_str(), "cp-1");
    assert_eq!(cp.machine.network.interfaces.len(), 2);
    assert_eq!(cp.cluster.endpoint.port(), 6443);
    assert_eq!(cp.cluster.dns_domain.as_str(), "cluster.local");
    let worker = MachineConfig::from_yaml(WORKER).unwrap();
    assert_eq!(worker.role, Role::Worker);
    assert_eq!(worker.generation.get(), 3);
    assert_eq!(
        worker.cluster.worker.unwrap().bootstrap_token.id(),
        "abcdef"
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let cp = format!("{:?}", MachineConfig::from_yaml(CONTROLPLANE).unwrap());
    assert!(cp.contains("cp-1") && !cp.contains("PRIVATE KEY"), "{cp}");
    let worker = format!("{:?}", MachineConfig::from_yaml(WORKER).unwrap());
    assert!(!worker.contains("0123456789abcdef"), "{worker}");
}

#[test]
fn the_documented_example_parses() {
    let doc = include_str!("../../docs/machine-config.md");
    let start = doc.find("```yaml\n").expect("the doc has a yaml example") + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let config = MachineConfig::from_yaml(&doc[start..end]).unwrap();
    assert_eq!(config.role, Role::ControlPlane);
}

#[test]
fn serialised_config_parses_back_identically() {
    let cp = MachineConfig::from_yaml(CONTROLPLANE).unwrap();
    let yaml = cp.to_yaml().unwrap();
    assert_eq!(MachineConfig::from_yaml(&yaml).unwrap(), cp);
    let worker = MachineConfig::from_yaml(WORKER).unwrap();
    assert_eq!(
        MachineConfig::from_yaml(&worker.to_yaml().unwrap()).unwrap(),
        worker
    );
}

#[test]
fn sign_then_verify_round_trips() {
    let key = SigningKey::generate().unwrap();
    let file = sign(CONTROLPLANE.as_bytes(), &key);
    assert!(file.ends_with(CONTROLPLANE.as_bytes()));
    let verified = verify(&file, &[key.public_key()]).unwrap();
    assert_eq!(
        verified.config,
        MachineConfig::from_yaml(CONTROLPLANE).unwrap()
    );
    assert_eq!(verified.key_id, key.public_key().key_id());
    assert_eq!(verified.sha256.len(), 64);
    // A node may trust several keys (key rotation): any of them will do.
    let other = SigningKey::generate().unwrap();
    assert!(verify(&file, &[other.public_key(), key.public_key()]).is_ok());
}

#[test]
fn a_changed_byte_anywhere_is_refused() {
    let key = SigningKey::generate().unwrap();
    let file = sign(WORKER.as_bytes(), &key);
    let header_len = file.iter().position(|&b| b == b'\n').unwrap() + 1;
    for index in 0..file.len() {
        let mut tampered = file.clone();
        tampered[index] ^= 0x01;
        let result = verify(&tampered, &[key.public_key()]);
        assert!(result.is_err(), "flipping byte {index} went unnoticed");
        if index >= header_len {
            assert!(
                matches!(
                    result,
                    Err(ConfigError::Signature(SignatureError::BadSignature { .. }))
                ),
                "byte {index}: {result:?}"
            );
        }
    }
    let mut appended = file.clone();
    appended.extend_from_slice(b"extra: 1\n");
    let err = verify(&appended, &[key.public_key()]).unwrap_err();
    assert!(
        err.to_string().contains("changed after it was signed"),
        "{err}"
    );
}

#[test]
fn a_config_signed_by_another_key_is_refused_as_unknown_key() {
    let cluster_key = SigningKey::generate().unwrap();
    let intruder = SigningKey::generate().unwrap();
    let file = sign(WORKER.as_bytes(), &intruder);
    let err = verify(&file, &[cluster_key.public_key()]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains(&intruder.public_key().key_id().to_string()));
    assert!(message.contains(&cluster_key.public_key().key_id().to_string()));
}

#[test]
fn unsigned_and_malformed_headers_are_refused() {
    let key = SigningKey::generate().unwrap();
    let trusted = [key.public_key()];
    let err = verify(WORKER.as_bytes(), &trusted).unwrap_err();
    assert_eq!(err, ConfigError::Signature(SignatureError::Unsigned));
    assert!(err.to_string().contains("not signed"));
    for (file, why) in [
        ("# skiff-signature: ed25519 0011\nversion: v1alpha1\n", "3"),
        ("# skiff-signature: ed25519 00112233445566zz AAAA\n", "hex"),
        ("# skiff-signature: ed25519 0011223344556677 AAAA\n", "64"),
        (
            "# skiff-signature: ed25519 0011223344556677 ***\n",
            "base64",
        ),
        ("# skiff-signature: ed25519", "no end"),
        ("# skiff-signature:ed25519 0011223344556677 AAAA\n", "space"),
    ] {
        let err = verify(file.as_bytes(), &trusted).unwrap_err();
        assert!(
            matches!(err, ConfigError::Signature(SignatureError::Malformed(_))),
            "{file}: {err:?}"
        );
        assert!(err.to_string().contains(why), "{file}: {err}");
    }
}

#[test]
fn yaml_problems_are_reported_with_file_positions() {
    let key = SigningKey::generate().unwrap();
    let trusted = [key.public_key()];
    let typo = WORKER.replace("  hostname: worker-1", "  hostnme: worker-1");
    let err = verify(&sign(typo.as_bytes(), &key), &trusted).unwrap_err();
    let ConfigError::UnknownField {
        field, path, line, ..
    } = &err
    else {
        panic!("expected an unknown field error, got {err:?}");
    };
    assert_eq!(field, "hostnme");
    assert_eq!(path, "machine");
    // Line numbers count the signature line, so they match the file on disk.
    let expected_line = typo.lines().position(|l| l.contains("hostnme")).unwrap() + 2;
    assert_eq!(*line, expected_line);
    assert!(err.to_string().contains("unknown field `hostnme`"), "{err}");

    let top = format!("{WORKER}extra: true\n");
    let err = MachineConfig::from_yaml(&top).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownField { field, path, .. } if field == "extra" && path == "the top level"),
        "{err:?}"
    );

    let bad_cidr = WORKER.replace("podCidr: 10.244.0.0/16", "podCidr: 10.244.0.0/33");
    let err = MachineConfig::from_yaml(&bad_cidr).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("cluster.podCidr"), "{message}");
    assert!(message.contains("/33"), "{message}");
    assert!(matches!(err, ConfigError::Yaml { line, .. } if line > 1));

    let broken = "version: v1alpha1\nmachine: [unclosed\n";
    assert!(matches!(
        MachineConfig::from_yaml(broken),
        Err(ConfigError::Yaml { .. })
    ));
    let wrong_version = WORKER.replace("version: v1alpha1", "version: v2");
    let err = MachineConfig::from_yaml(&wrong_version).unwrap_err();
    assert!(err.to_string().contains("v1alpha1"), "{err}");
}

#[test]
fn validation_failures_name_the_field() {
    let key = SigningKey::generate().unwrap();
    let leaked = WORKER.replace("role: worker", "role: controlplane");
    let err = verify(&sign(leaked.as_bytes(), &key), &[key.public_key()]).unwrap_err();
    let ConfigError::Invalid(violations) = &err else {
        panic!("expected a validation error, got {err:?}");
    };
    let paths: Vec<&str> = violations.0.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["cluster.controlPlane", "cluster.worker"]);
}

#[test]
fn oversized_and_non_utf8_files_are_refused() {
    let key = SigningKey::generate().unwrap();
    let huge = vec![b'#'; skiff_machine::MAX_CONFIG_BYTES + 1];
    assert!(matches!(
        verify(&huge, &[key.public_key()]),
        Err(ConfigError::TooLarge { .. })
    ));
    let mut binary = WORKER.as_bytes().to_vec();
    binary.push(0xff);
    let err = verify(&sign(&binary, &key), &[key.public_key()]).unwrap_err();
    assert!(matches!(err, ConfigError::NotUtf8 { .. }), "{err:?}");
}

#[test]
fn generations_never_go_back() {
    let worker = MachineConfig::from_yaml(WORKER).unwrap(); // generation 3
    assert!(check_generation(None, &worker).is_ok());
    assert!(check_generation(Some(2), &worker).is_ok());
    assert!(check_generation(Some(3), &worker).is_ok());
    let err = check_generation(Some(4), &worker).unwrap_err();
    assert_eq!(
        err,
        ConfigError::StaleGeneration {
            generation: 3,
            last_applied: 4
        }
    );
    assert!(err.to_string().contains("roll back"));
    let zero = WORKER.replace("generation: 3", "generation: 0");
    assert!(MachineConfig::from_yaml(&zero).is_err());
}
