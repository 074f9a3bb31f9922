//! A container's process as Kubernetes defines it: argv from `command`/`args` and the image's
//! entrypoint/cmd, the environment from the image, `envFrom`, `env` (with `valueFrom`) and
//! `$(VAR)` references, the services' variables (`NGINX_SERVICE_HOST`, docker-link style
//! `NGINX_PORT_80_TCP`), and the user from the security contexts or the image.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use serde_json::Value;

use crate::images::ImageConfig;

/// Expand `$(VAR)` references from `vars`; `$$` escapes a `$`, unknown references stay.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// argv: `command` replaces the entrypoint (and drops the image cmd), `args` replaces cmd.
pub fn argv(c: &Container, image: &ImageConfig, vars: &BTreeMap<String, String>) -> Vec<String> {
    let (entry, cmd) = match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => (cmd.clone(), args.clone()),
        (Some(cmd), None) => (cmd.clone(), vec![]),
        (None, Some(args)) => (image.entrypoint.clone().unwrap_or_default(), args.clone()),
        (None, None) => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    entry
        .into_iter()
        .chain(cmd)
        .map(|a| {
            if c.command.is_some() || c.args.is_some() {
                expand(&a, vars)
            } else {
                a
            }
        })
        .collect()
}

/// Value of a downward-API field path of `pod`.
pub fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    let v = serde_json::to_value(pod).ok()?;
    let get = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    if let Some(rest) = path
        .strip_prefix("metadata.labels['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return v
            .pointer("/metadata/labels")?
            .get(rest)?
            .as_str()
            .map(str::to_owned);
    }
    if let Some(rest) = path
        .strip_prefix("metadata.annotations['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return v
            .pointer("/metadata/annotations")?
            .get(rest)?
            .as_str()
            .map(str::to_owned);
    }
    match path {
        "metadata.name" => get("/metadata/name"),
        "metadata.namespace" => get("/metadata/namespace"),
        "metadata.uid" => get("/metadata/uid"),
        "spec.nodeName" => get("/spec/nodeName"),
        "spec.serviceAccountName" => get("/spec/serviceAccountName"),
        "status.hostIP" => get("/status/hostIP"),
        "status.podIP" => get("/status/podIP"),
        "metadata.labels" | "metadata.annotations" => {
            let key = path.trim_start_matches("metadata.");
            let map = v.pointer(&format!("/metadata/{key}"))?.as_object()?;
            let mut lines: Vec<String> = map
                .iter()
                .map(|(k, val)| format!("{k}=\"{}\"", val.as_str().unwrap_or_default()))
                .collect();
            lines.sort();
            Some(lines.join("\n"))
        }
        _ => None,
    }
}

/// The numeric uid/gid a `user` string of an image config names (`uid`, `uid:gid`); names
/// are looked up in the image's /etc/passwd by the caller.
pub fn parse_user(user: &str) -> (Option<u32>, Option<u32>) {
    let mut parts = user.splitn(2, ':');
    let uid = parts.next().and_then(|u| u.parse().ok());
    let gid = parts.next().and_then(|g| g.parse().ok());
    (uid, gid)
}

/// Look a user name up in a passwd file's text: (uid, gid).
pub fn passwd_lookup(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The variables kubelet gives every container for `services` (the pod's namespace's when
/// `enableServiceLinks` is on, and the API server's `kubernetes` service): for a service
/// `my-web` with cluster IP `10.96.0.5` and first port 80/TCP, `MY_WEB_SERVICE_HOST`,
/// `MY_WEB_SERVICE_PORT`, `MY_WEB_SERVICE_PORT_<NAME>` per named port, and the docker-link
/// style `MY_WEB_PORT=tcp://10.96.0.5:80`, `MY_WEB_PORT_80_TCP{,_PROTO,_PORT,_ADDR}`.
/// Headless services (no cluster IP) give none.
pub fn service_vars(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.as_deref().unwrap_or("TCP").to_owned()
        };
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// A name as an environment variable name: upper case, dashes as underscores.
fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("B".into(), "two".into()),
        ])
    }

    #[test]
    fn expands_references() {
        assert_eq!(expand("x$(A)y$(B)", &vars()), "x1ytwo");
        assert_eq!(expand("$$(A) $(C) $", &vars()), "$(A) $(C) $");
        assert_eq!(expand("é$(A)", &vars()), "é1");
    }

    #[test]
    fn argv_rules() {
        let img = ImageConfig {
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["dflt".into()]),
            ..Default::default()
        };
        let mut c = Container::default();
        assert_eq!(argv(&c, &img, &vars()), vec!["/ep", "dflt"]);
        c.args = Some(vec!["$(A)".into()]);
        assert_eq!(argv(&c, &img, &vars()), vec!["/ep", "1"]);
        c.command = Some(vec!["sh".into()]);
        c.args = None;
        assert_eq!(argv(&c, &img, &vars()), vec!["sh"]);
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000:50"), (Some(1000), Some(50)));
        assert_eq!(parse_user("nginx"), (None, None));
        let pw = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101::/:/bin/false\n";
        assert_eq!(passwd_lookup(pw, "nginx"), Some((101, 101)));
        assert_eq!(passwd_lookup(pw, "nobody"), None);
    }

    #[test]
    fn downward_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "b": "c"}},
            "spec": {"containers": [], "nodeName": "n1"},
        }))
        .unwrap();
        assert_eq!(field_ref(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(field_ref(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']").as_deref(),
            Some("web")
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels").as_deref(),
            Some("app=\"web\"\nb=\"c\"")
        );
    }

    #[test]
    fn service_links() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-web"},
            "spec": {"clusterIP": "10.96.0.5", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"port": 53, "protocol": "UDP"}
            ]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
        }))
        .unwrap();
        let vars: BTreeMap<String, String> = service_vars(&[svc, headless]).into_iter().collect();
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("MY_WEB_SERVICE_HOST"), Some("10.96.0.5"));
        assert_eq!(get("MY_WEB_SERVICE_PORT"), Some("80"));
        assert_eq!(get("MY_WEB_SERVICE_PORT_HTTP"), Some("80"));
        assert_eq!(get("MY_WEB_PORT"), Some("tcp://10.96.0.5:80"));
        assert_eq!(get("MY_WEB_PORT_80_TCP"), Some("tcp://10.96.0.5:80"));
        assert_eq!(get("MY_WEB_PORT_80_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("MY_WEB_PORT_53_UDP"), Some("udp://10.96.0.5:53"));
        assert_eq!(get("MY_WEB_PORT_53_UDP_ADDR"), Some("10.96.0.5"));
        assert_eq!(get("MY_WEB_PORT_53_UDP_PORT"), Some("53"));
        assert!(!vars.keys().any(|k| k.starts_with("DB_")), "{vars:?}");
    }
}
