//! The cross-field rules of a machine config: everything a single field cannot check on its
//! own. `MachineConfig::validate` reports every broken rule at once, each with its field path.

use std::fmt;

use crate::config::{Cluster, Interface, Machine, MachineConfig, Role};

/// One broken rule: where (a field path such as `machine.network.interfaces[0].addresses`) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending field.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every rule a config breaks (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", violation.path, violation.message)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Report(Vec<Violation>);

impl Report {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }
}

impl MachineConfig {
    /// Checks the rules that involve more than one field: role and credentials agree, every
    /// interface is selected once and configured one way, networks are written as networks,
    /// node, pod and service networks don't overlap, plain-HTTP mirrors are marked insecure.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut report = Report::default();
        check_role(self.role, &self.cluster, &mut report);
        check_cluster_networks(&self.cluster, &mut report);
        check_machine(&self.machine, &self.cluster, &mut report);
        if report.0.is_empty() {
            Ok(())
        } else {
            Err(Violations(report.0))
        }
    }
}

fn check_role(role: Role, cluster: &Cluster, report: &mut Report) {
    match role {
        Role::ControlPlane => {
            if cluster.control_plane.is_none() {
                report.add(
                    "cluster.controlPlane",
                    "a control plane needs its secrets (caKey, serviceAccountKey, machineCaKey)",
                );
            }
            if cluster.worker.is_some() {
                report.add(
                    "cluster.worker",
                    "worker secrets belong in worker configs only; remove them",
                );
            }
        }
        Role::Worker => {
            if cluster.worker.is_none() {
                report.add(
                    "cluster.worker",
                    "a worker needs `bootstrapToken` to join the cluster",
                );
            }
            if cluster.control_plane.is_some() {
                report.add(
                    "cluster.controlPlane",
                    "a worker must not carry the cluster's CA or signing keys; remove them",
                );
            }
        }
    }
}

fn check_cluster_networks(cluster: &Cluster, report: &mut Report) {
    let pods = cluster.pod_cidr;
    let services = cluster.service_cidr;
    for (path, cidr) in [("cluster.podCidr", pods), ("cluster.serviceCidr", services)] {
        if !cidr.is_network() {
            report.add(
                path,
                format!(
                    "`{cidr}` has host bits set; did you mean `{}`?",
                    cidr.network()
                ),
            );
        }
    }
    if pods.is_ipv4() && pods.prefix() > 24 {
        report.add(
            "cluster.podCidr",
            format!("`{pods}` is too small; use a /24 or larger so every node gets a /24"),
        );
    }
    let (shortest, longest) = if services.is_ipv4() {
        (12, 28)
    } else {
        (108, 124)
    };
    if services.prefix() < shortest || services.prefix() > longest {
        report.add(
            "cluster.serviceCidr",
            format!("`{services}` must have a prefix length between /{shortest} and /{longest}"),
        );
    }
    if pods.is_ipv4() != services.is_ipv4() {
        report.add(
            "cluster.serviceCidr",
            "pod and service networks must be the same address family",
        );
    } else if pods.overlaps(&services) {
        report.add(
            "cluster.serviceCidr",
            format!("`{services}` overlaps the pod network `{pods}`"),
        );
    }
}

fn check_machine(machine: &Machine, cluster: &Cluster, report: &mut Report) {
    let interfaces = &machine.network.interfaces;
    for (index, interface) in interfaces.iter().enumerate() {
        let path = format!("machine.network.interfaces[{index}]");
        check_interface(&path, interface, cluster, report);
        let earlier = &interfaces[..index];
        let repeated = earlier.iter().any(|other| {
            (interface.name.is_some() && other.name == interface.name)
                || (interface.mac.is_some() && other.mac == interface.mac)
        });
        if repeated {
            report.add(path, "selects the same interface as an earlier entry");
        }
    }
    for (host, mirrors) in &machine.registry_mirrors {
        let path = format!("machine.registryMirrors[\"{host}\"]");
        if mirrors.is_empty() {
            report.add(&path, "list at least one mirror or remove the registry");
        }
        for (index, mirror) in mirrors.iter().enumerate() {
            if !mirror.url.is_https() && !mirror.insecure {
                report.add(
                    format!("{path}[{index}]"),
                    format!(
                        "`{}` is plain HTTP; set `insecure: true` to allow it",
                        mirror.url
                    ),
                );
            }
        }
    }
}

fn check_interface(path: &str, interface: &Interface, cluster: &Cluster, report: &mut Report) {
    match (&interface.name, &interface.mac) {
        (None, None) => report.add(path, "select the interface with `name` or `mac`"),
        (Some(_), Some(_)) => {
            report.add(path, "select the interface by `name` or by `mac`, not both")
        }
        _ => {}
    }
    if interface.dhcp && !interface.addresses.is_empty() {
        report.add(
            format!("{path}.addresses"),
            "an interface uses either `dhcp: true` or static addresses, not both",
        );
    }
    if !interface.dhcp && interface.addresses.is_empty() {
        report.add(
            format!("{path}.addresses"),
            "a static interface needs at least one address (or set `dhcp: true`)",
        );
    }
    for (index, address) in interface.addresses.iter().enumerate() {
        let path = format!("{path}.addresses[{index}]");
        if address.is_ipv4() && address.prefix() < 31 && address.network() == *address {
            report.add(
                &path,
                format!("`{address}` is the network address of its prefix, not a host address"),
            );
        }
        for (name, network) in [("pod", cluster.pod_cidr), ("service", cluster.service_cidr)] {
            if network.contains(address.addr()) {
                report.add(
                    &path,
                    format!("`{address}` lies inside the {name} network `{network}`"),
                );
            }
        }
    }
    for (index, route) in interface.routes.iter().enumerate() {
        let path = format!("{path}.routes[{index}]");
        if !route.to.is_network() {
            report.add(
                format!("{path}.to"),
                format!(
                    "`{}` has host bits set; did you mean `{}`?",
                    route.to,
                    route.to.network()
                ),
            );
        }
        if route.via.is_ipv4() != route.to.is_ipv4() {
            report.add(
                format!("{path}.via"),
                "the gateway must be in the same address family as the destination",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkerSecrets;

    fn control_plane() -> MachineConfig {
        MachineConfig::from_yaml(include_str!("../tests/data/controlplane.yaml")).unwrap()
    }

    fn worker() -> MachineConfig {
        MachineConfig::from_yaml(include_str!("../tests/data/worker.yaml")).unwrap()
    }

    /// Validates and returns "path: message" strings, so tests can assert on both.
    fn problems(config: &MachineConfig) -> Vec<String> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(Violations(all)) => all
                .into_iter()
                .map(|v| format!("{}: {}", v.path, v.message))
                .collect(),
        }
    }

    fn assert_single(config: &MachineConfig, path: &str, words: &str) {
        let found = problems(config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(&format!("{path}: ")), "{found:?}");
        assert!(found[0].contains(words), "{found:?}");
    }

    #[test]
    fn examples_are_valid() {
        assert!(problems(&control_plane()).is_empty());
        assert!(problems(&worker()).is_empty());
    }

    #[test]
    fn worker_must_not_carry_ca_keys() {
        let mut config = worker();
        config.cluster.control_plane = control_plane().cluster.control_plane;
        assert_single(&config, "cluster.controlPlane", "must not carry");
    }

    #[test]
    fn each_role_needs_its_credentials() {
        let mut config = worker();
        config.cluster.worker = None;
        assert_single(&config, "cluster.worker", "bootstrapToken");
        let mut config = control_plane();
        config.cluster.control_plane = None;
        assert_single(&config, "cluster.controlPlane", "needs its secrets");
        let mut config = control_plane();
        config.cluster.worker = Some(WorkerSecrets {
            bootstrap_token: "abcdef.0123456789abcdef".parse().unwrap(),
            machine_api: None,
        });
        assert_single(&config, "cluster.worker", "worker configs only");
    }

    #[test]
    fn interfaces_are_selected_once_by_name_or_mac() {
        let mut config = control_plane();
        config.machine.network.interfaces[0].name = Some("eth0".parse().unwrap());
        assert_single(&config, "machine.network.interfaces[0]", "not both");
        let mut config = control_plane();
        config.machine.network.interfaces[1].name = None;
        assert_single(&config, "machine.network.interfaces[1]", "`name` or `mac`");
        let mut config = control_plane();
        let copy = config.machine.network.interfaces[1].clone();
        config.machine.network.interfaces.push(copy);
        assert_single(&config, "machine.network.interfaces[2]", "same interface");
    }

    #[test]
    fn interfaces_use_dhcp_or_static_addresses() {
        let mut config = control_plane();
        config.machine.network.interfaces[0].addresses.clear();
        assert_single(
            &config,
            "machine.network.interfaces[0].addresses",
            "needs at least one address",
        );
        let mut config = control_plane();
        config.machine.network.interfaces[0].dhcp = true;
        assert_single(
            &config,
            "machine.network.interfaces[0].addresses",
            "not both",
        );
    }

    #[test]
    fn static_addresses_are_hosts_outside_cluster_networks() {
        let mut config = control_plane();
        config.machine.network.interfaces[0].addresses = vec!["10.0.2.0/24".parse().unwrap()];
        assert_single(
            &config,
            "machine.network.interfaces[0].addresses[0]",
            "network address",
        );
        let mut config = control_plane();
        config.machine.network.interfaces[0].addresses = vec!["10.244.1.5/24".parse().unwrap()];
        assert_single(
            &config,
            "machine.network.interfaces[0].addresses[0]",
            "inside the pod network",
        );
    }

    #[test]
    fn routes_go_to_networks_through_same_family_gateways() {
        let mut config = control_plane();
        config.machine.network.interfaces[0].routes[0].to = "10.1.2.3/8".parse().unwrap();
        assert_single(
            &config,
            "machine.network.interfaces[0].routes[0].to",
            "did you mean `10.0.0.0/8`",
        );
        let mut config = control_plane();
        config.machine.network.interfaces[0].routes[0].via = "fd00::1".parse().unwrap();
        assert_single(
            &config,
            "machine.network.interfaces[0].routes[0].via",
            "address family",
        );
    }

    #[test]
    fn pod_and_service_networks_are_sane() {
        let mut config = worker();
        config.cluster.service_cidr = "10.244.128.0/20".parse().unwrap();
        assert_single(&config, "cluster.serviceCidr", "overlaps the pod network");
        let mut config = worker();
        config.cluster.pod_cidr = "10.244.0.1/16".parse().unwrap();
        assert_single(&config, "cluster.podCidr", "did you mean `10.244.0.0/16`");
        let mut config = worker();
        config.cluster.pod_cidr = "10.244.0.0/25".parse().unwrap();
        assert_single(&config, "cluster.podCidr", "too small");
        let mut config = worker();
        config.cluster.service_cidr = "172.0.0.0/8".parse().unwrap();
        assert_single(&config, "cluster.serviceCidr", "between /12 and /28");
        let mut config = worker();
        config.cluster.service_cidr = "fd00:96::/112".parse().unwrap();
        assert_single(&config, "cluster.serviceCidr", "same address family");
    }

    #[test]
    fn plain_http_mirrors_must_be_marked_insecure() {
        let mut config = worker();
        for mirrors in config.machine.registry_mirrors.values_mut() {
            mirrors[0].insecure = false;
        }
        assert_single(
            &config,
            "machine.registryMirrors[\"docker.io\"][0]",
            "insecure: true",
        );
        let mut config = worker();
        for mirrors in config.machine.registry_mirrors.values_mut() {
            mirrors.clear();
        }
        assert_single(
            &config,
            "machine.registryMirrors[\"docker.io\"]",
            "at least one",
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut config = worker();
        config.cluster.worker = None;
        config.cluster.service_cidr = config.cluster.pod_cidr;
        let found = problems(&config);
        assert_eq!(found.len(), 2, "{found:?}");
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("cluster.worker: ") && message.contains("; cluster.serviceCidr: ")
        );
    }
}
