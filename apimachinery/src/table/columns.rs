//! The column definitions of each kind's table, as `kube-apiserver` declares them: names, types,
//! formats, priorities (1 = `-o wide` only) and descriptions taken from the API documentation.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

use crate::registry::{Registry, Resource};

/// One column definition.
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: String,
    priority: u8,
}

impl Col {
    fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

fn string(name: &'static str, description: impl Into<String>) -> Col {
    Col {
        name,
        ty: "string",
        format: "",
        description: description.into(),
        priority: 0,
    }
}

fn typed(name: &'static str, ty: &'static str, description: impl Into<String>) -> Col {
    Col {
        ty,
        ..string(name, description)
    }
}

/// Field descriptions from the OpenAPI schemas, generated once per type.
struct Docs {
    generator: SchemaGenerator,
    schemas: HashMap<String, Schema>,
}

impl Docs {
    fn new() -> Self {
        Self {
            generator: SchemaGenerator::default(),
            schemas: HashMap::new(),
        }
    }

    /// The description of property `field` of `T`.
    fn of<T: JsonSchema>(&mut self, field: &str) -> String {
        let name = T::schema_name().into_owned();
        let generator = &mut self.generator;
        let schema = self
            .schemas
            .entry(name)
            .or_insert_with(|| T::json_schema(generator));
        schema
            .get("properties")
            .and_then(|p| p.get(field))
            .and_then(|p| p.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn name_col(&mut self) -> Col {
        Col {
            format: "name",
            ..string("Name", self.of::<ObjectMeta>("name"))
        }
    }

    fn age(&mut self) -> Col {
        string("Age", self.of::<ObjectMeta>("creationTimestamp"))
    }

    /// CONTAINERS, IMAGES and SELECTOR, the wide columns of workloads.
    fn workload_wide(&mut self, selector: String) -> [Col; 3] {
        [
            string("Containers", "Names of each container in the template.").wide(),
            string(
                "Images",
                "Images referenced by each container in the template.",
            )
            .wide(),
            string("Selector", selector).wide(),
        ]
    }
}

fn columns(group: &str, kind: &str, d: &mut Docs) -> Vec<Col> {
    use apps::v1 as apps;
    use core::v1 as core;
    let mut cols = vec![d.name_col()];
    match (group, kind) {
        ("", "Pod") => cols.extend([
            string("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            string("Status", "The aggregate status of the containers in this pod."),
            string(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            d.age(),
            string("IP", d.of::<core::PodStatus>("podIP")).wide(),
            string("Node", d.of::<core::PodSpec>("nodeName")).wide(),
            string("Nominated Node", d.of::<core::PodStatus>("nominatedNodeName")).wide(),
            string("Readiness Gates", d.of::<core::PodSpec>("readinessGates")).wide(),
        ]),
        ("", "Namespace") => cols.extend([string("Status", "The status of the namespace"), d.age()]),
        ("", "Node") => cols.extend([
            string("Status", "The status of the node"),
            string("Roles", "The roles of the node"),
            d.age(),
            string("Version", d.of::<core::NodeSystemInfo>("kubeletVersion")),
            string("Internal-IP", d.of::<core::NodeStatus>("addresses")).wide(),
            string("External-IP", d.of::<core::NodeStatus>("addresses")).wide(),
            string("OS-Image", d.of::<core::NodeSystemInfo>("osImage")).wide(),
            string("Kernel-Version", d.of::<core::NodeSystemInfo>("kernelVersion")).wide(),
            string(
                "Container-Runtime",
                d.of::<core::NodeSystemInfo>("containerRuntimeVersion"),
            )
            .wide(),
        ]),
        ("", "Service") => cols.extend([
            string("Type", d.of::<core::ServiceSpec>("type")),
            string("Cluster-IP", d.of::<core::ServiceSpec>("clusterIP")),
            string("External-IP", d.of::<core::ServiceSpec>("externalIPs")),
            string("Port(s)", d.of::<core::ServiceSpec>("ports")),
            d.age(),
            string("Selector", d.of::<core::ServiceSpec>("selector")).wide(),
        ]),
        ("", "Endpoints") => cols.extend([
            string("Endpoints", d.of::<core::Endpoints>("subsets")),
            d.age(),
        ]),
        ("", "ConfigMap") => cols.extend([string("Data", d.of::<core::ConfigMap>("data")), d.age()]),
        ("", "Secret") => cols.extend([
            string("Type", d.of::<core::Secret>("type")),
            string("Data", d.of::<core::Secret>("data")),
            d.age(),
        ]),
        ("", "ServiceAccount") => cols.extend([
            string("Secrets", d.of::<core::ServiceAccount>("secrets")),
            d.age(),
        ]),
        ("", "Event") | ("events.k8s.io", "Event") => {
            let name = cols.remove(0).wide();
            cols.extend([
                string("Last Seen", d.of::<core::Event>("lastTimestamp")),
                string("Type", d.of::<core::Event>("type")),
                string("Reason", d.of::<core::Event>("reason")),
                string("Object", d.of::<core::Event>("involvedObject")),
                string("Subobject", d.of::<core::ObjectReference>("fieldPath")).wide(),
                string("Source", d.of::<core::Event>("source")).wide(),
                string("Message", d.of::<core::Event>("message")),
                string("First Seen", d.of::<core::Event>("firstTimestamp")).wide(),
                string("Count", d.of::<core::Event>("count")).wide(),
                name,
            ]);
        }
        ("", "PersistentVolumeClaim") => cols.extend([
            string("Status", d.of::<core::PersistentVolumeClaimStatus>("phase")),
            string("Volume", d.of::<core::PersistentVolumeClaimSpec>("volumeName")),
            string("Capacity", d.of::<core::PersistentVolumeClaimStatus>("capacity")),
            string("Access Modes", d.of::<core::PersistentVolumeClaimStatus>("accessModes")),
            string("StorageClass", "StorageClass of the pvc"),
            string("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
            d.age(),
            string("VolumeMode", d.of::<core::PersistentVolumeClaimSpec>("volumeMode")).wide(),
        ]),
        ("", "PersistentVolume") => cols.extend([
            string("Capacity", d.of::<core::PersistentVolumeSpec>("capacity")),
            string("Access Modes", d.of::<core::PersistentVolumeSpec>("accessModes")),
            string(
                "Reclaim Policy",
                d.of::<core::PersistentVolumeSpec>("persistentVolumeReclaimPolicy"),
            ),
            string("Status", d.of::<core::PersistentVolumeStatus>("phase")),
            string("Claim", d.of::<core::PersistentVolumeSpec>("claimRef")),
            string("StorageClass", "StorageClass of the pv"),
            string("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
            string("Reason", d.of::<core::PersistentVolumeStatus>("reason")),
            d.age(),
            string("VolumeMode", d.of::<core::PersistentVolumeSpec>("volumeMode")).wide(),
        ]),
        ("apps", "Deployment") => {
            cols.extend([
                string("Ready", "Number of the pod with ready state"),
                string("Up-to-date", d.of::<apps::DeploymentStatus>("updatedReplicas")),
                string("Available", d.of::<apps::DeploymentStatus>("availableReplicas")),
                d.age(),
            ]);
            let selector = d.of::<apps::DeploymentSpec>("selector");
            cols.extend(d.workload_wide(selector));
        }
        ("apps", "ReplicaSet") => {
            cols.extend([
                typed("Desired", "integer", d.of::<apps::ReplicaSetSpec>("replicas")),
                typed("Current", "integer", d.of::<apps::ReplicaSetStatus>("replicas")),
                typed("Ready", "integer", d.of::<apps::ReplicaSetStatus>("readyReplicas")),
                d.age(),
            ]);
            let selector = d.of::<apps::ReplicaSetSpec>("selector");
            cols.extend(d.workload_wide(selector));
        }
        ("apps", "StatefulSet") => {
            cols.extend([string("Ready", "Number of the pod with ready state"), d.age()]);
            let [containers, images, _] = d.workload_wide(String::new());
            cols.extend([containers, images]);
        }
        ("apps", "DaemonSet") => {
            cols.extend([
                typed(
                    "Desired",
                    "integer",
                    d.of::<apps::DaemonSetStatus>("desiredNumberScheduled"),
                ),
                typed(
                    "Current",
                    "integer",
                    d.of::<apps::DaemonSetStatus>("currentNumberScheduled"),
                ),
                typed("Ready", "integer", d.of::<apps::DaemonSetStatus>("numberReady")),
                typed(
                    "Up-to-date",
                    "integer",
                    d.of::<apps::DaemonSetStatus>("updatedNumberScheduled"),
                ),
                typed("Available", "integer", d.of::<apps::DaemonSetStatus>("numberAvailable")),
                string("Node Selector", d.of::<core::PodSpec>("nodeSelector")),
                d.age(),
            ]);
            let selector = d.of::<apps::DaemonSetSpec>("selector");
            cols.extend(d.workload_wide(selector));
        }
        ("apps", "ControllerRevision") => cols.extend([
            string("Controller", "Controller of the object"),
            string("Revision", d.of::<apps::ControllerRevision>("revision")),
            d.age(),
        ]),
        ("batch", "Job") => {
            cols.extend([
                string("Status", "Status of the job."),
                string("Completions", d.of::<batch::v1::JobStatus>("succeeded")),
                string("Duration", "Time required to complete the job."),
                d.age(),
            ]);
            let selector = d.of::<batch::v1::JobSpec>("selector");
            cols.extend(d.workload_wide(selector));
        }
        ("batch", "CronJob") => {
            cols.extend([
                string("Schedule", d.of::<batch::v1::CronJobSpec>("schedule")),
                string("Timezone", d.of::<batch::v1::CronJobSpec>("timeZone")),
                typed("Suspend", "boolean", d.of::<batch::v1::CronJobSpec>("suspend")),
                typed("Active", "integer", d.of::<batch::v1::CronJobStatus>("active")),
                string(
                    "Last Schedule",
                    d.of::<batch::v1::CronJobStatus>("lastScheduleTime"),
                ),
                d.age(),
            ]);
            let selector = d.of::<batch::v1::JobSpec>("selector");
            cols.extend(d.workload_wide(selector));
        }
        ("coordination.k8s.io", "Lease") => cols.extend([
            string("Holder", d.of::<coordination::v1::LeaseSpec>("holderIdentity")),
            d.age(),
        ]),
        ("discovery.k8s.io", "EndpointSlice") => cols.extend([
            string("AddressType", d.of::<discovery::v1::EndpointSlice>("addressType")),
            string("Ports", d.of::<discovery::v1::EndpointSlice>("ports")),
            string("Endpoints", d.of::<discovery::v1::EndpointSlice>("endpoints")),
            d.age(),
        ]),
        ("networking.k8s.io", "Ingress") => cols.extend([
            string(
                "Class",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            string(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            string(
                "Address",
                "Address is a list containing ingress points for the load-balancer",
            ),
            string("Ports", "Ports of TLS configurations that open"),
            d.age(),
        ]),
        ("networking.k8s.io", "IngressClass") => cols.extend([
            string("Controller", "Controller that is responsible for handling this class"),
            string("Parameters", "A reference to a resource with additional parameters"),
            d.age(),
        ]),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let what = if kind == "RoleBinding" {
                "roleBinding"
            } else {
                "clusterRoleBinding"
            };
            let role = if kind == "RoleBinding" {
                d.of::<rbac::v1::RoleBinding>("roleRef")
            } else {
                d.of::<rbac::v1::ClusterRoleBinding>("roleRef")
            };
            cols.extend([
                string("Role", role),
                d.age(),
                string("Users", format!("Users in the {what}")).wide(),
                string("Groups", format!("Groups in the {what}")).wide(),
                string("ServiceAccounts", format!("ServiceAccounts in the {what}")).wide(),
            ]);
        }
        // Role, ClusterRole and every kind without a printer of its own.
        _ => cols.push(typed(
            "Created At",
            "date",
            d.of::<ObjectMeta>("creationTimestamp"),
        )),
    }
    cols
}

/// Definitions for every built-in kind, computed once.
static DEFINITIONS: LazyLock<HashMap<(&'static str, &'static str), Vec<Value>>> =
    LazyLock::new(|| {
        let mut docs = Docs::new();
        Registry::builtin()
            .all()
            .iter()
            .map(|r| {
                let defs = columns(r.group, r.kind, &mut docs)
                    .iter()
                    .map(Col::to_json)
                    .collect();
                ((r.group, r.kind), defs)
            })
            .collect()
    });

/// Column definitions for a resource (name, type, format, description, priority).
pub fn column_definitions(res: &Resource) -> Vec<Value> {
    match DEFINITIONS.get(&(res.group, res.kind)) {
        Some(defs) => defs.clone(),
        None => columns(res.group, res.kind, &mut Docs::new())
            .iter()
            .map(Col::to_json)
            .collect(),
    }
}
