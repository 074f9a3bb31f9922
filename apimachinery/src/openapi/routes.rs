//! The REST operations the API serves, as one neutral model that [`super::v2`] and
//! [`super::v3`] render: for each resource its collection, item, all-namespaces and
//! (deprecated) watch paths and its subresources, plus the discovery endpoints.

use crate::registry::{Resource, Subresource};
use crate::schema;

use super::params::{self, Param};

/// How a response or body is typed: a definition name or an inline schema.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Definition(String),
    Text,
}

/// The media types an operation's response may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Produces {
    Object,
    Stream,
    Text,
}

impl Produces {
    pub(super) fn media_types(self) -> &'static [&'static str] {
        match self {
            Self::Object => &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
            Self::Stream => &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
                "application/json;stream=watch",
                "application/vnd.kubernetes.protobuf;stream=watch",
            ],
            Self::Text => &["text/plain"],
        }
    }
}

/// The patch content types the server accepts.
pub(super) const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// One HTTP operation.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    /// Lowercase HTTP method: `get`, `put`, `post`, `patch`, `delete`.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    /// `x-kubernetes-action`: get, list, put, post, patch, delete, deletecollection, watch,
    /// watchlist.
    pub action: &'static str,
    /// `x-kubernetes-group-version-kind` (group, version, kind).
    pub gvk: Option<(String, String, String)>,
    pub tag: String,
    pub params: Vec<Param>,
    /// The request body, and whether it is required.
    pub body: Option<(Body, bool)>,
    /// Media types of the body; `None` means `*/*`.
    pub consumes: Option<&'static [&'static str]>,
    pub produces: Produces,
    /// Status codes with their response bodies; 401 is always added.
    pub responses: Vec<(u16, Body)>,
}

/// One path with its operations and the parameters they share.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub path: String,
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

/// `Core`, `Apps`, `RbacAuthorization`: the group as operation ids spell it.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .strip_suffix(".k8s.io")
        .unwrap_or(group)
        .split('.')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The operation tag of a group (`core`, `apps`, `rbacAuthorization`).
pub(super) fn group_tag(group: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The URL prefix of a group version: `/api/v1` or `/apis/apps/v1`.
pub(super) fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Builds the operations of one resource.
struct ResourceOps<'a> {
    res: &'a Resource,
    /// `AppsV1`
    gv: String,
    tag: String,
    kind_def: String,
}

impl<'a> ResourceOps<'a> {
    fn new(res: &'a Resource) -> Self {
        Self {
            res,
            gv: format!("{}{}", group_camel(res.group), upper_first(res.version)),
            tag: format!("{}_{}", group_tag(res.group), res.version),
            kind_def: schema::definition_name(res),
        }
    }

    fn gvk(&self) -> Option<(String, String, String)> {
        Some((
            self.res.group.into(),
            self.res.version.into(),
            self.res.kind.into(),
        ))
    }

    /// `Namespaced` for namespaced resources, empty otherwise.
    fn scope(&self) -> &'static str {
        if self.res.namespaced() {
            "Namespaced"
        } else {
            ""
        }
    }

    fn op(
        &self,
        method: &'static str,
        action: &'static str,
        id: String,
        description: String,
    ) -> Operation {
        Operation {
            method,
            id,
            description,
            action,
            gvk: self.gvk(),
            tag: self.tag.clone(),
            params: Vec::new(),
            body: None,
            consumes: None,
            produces: Produces::Object,
            responses: Vec::new(),
        }
    }

    fn kind_body(&self) -> Body {
        Body::Definition(self.kind_def.clone())
    }

    fn list_body(&self) -> Body {
        Body::Definition(schema::definition_name_for(
            self.res.group,
            self.res.version,
            &self.res.list_kind(),
        ))
    }

    fn routes(&self) -> Vec<Route> {
        let res = self.res;
        let (gv, scope, kind) = (&self.gv, self.scope(), res.kind);
        let prefix = gv_prefix(res.group, res.version);
        let ns_segment = if res.namespaced() {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let ns_params = || {
            if res.namespaced() {
                vec![params::namespace()]
            } else {
                Vec::new()
            }
        };
        let collection = format!("{prefix}{ns_segment}/{}", res.plural);
        let item = format!("{collection}/{{name}}");
        let mut routes = Vec::new();

        // The collection: list, create, deletecollection.
        let mut list = self.op(
            "get",
            "list",
            format!("list{gv}{scope}{kind}"),
            format!("list or watch objects of kind {kind}"),
        );
        list.params = params::list();
        list.produces = Produces::Stream;
        list.responses = vec![(200, self.list_body())];
        let mut create = self.op(
            "post",
            "post",
            format!("create{gv}{scope}{kind}"),
            format!("create {}", article(kind)),
        );
        create.params = params::create_or_replace();
        create.body = Some((self.kind_body(), true));
        create.responses = vec![
            (200, self.kind_body()),
            (201, self.kind_body()),
            (202, self.kind_body()),
        ];
        let mut ops = vec![list, create];
        if res.delete_collection {
            let mut delete = self.op(
                "delete",
                "deletecollection",
                format!("delete{gv}Collection{scope}{kind}"),
                format!("delete collection of {kind}"),
            );
            delete.params = params::delete_collection();
            delete.body = Some((Body::Definition(status_like("DeleteOptions")), false));
            delete.responses = vec![(200, Body::Definition(status_like("Status")))];
            ops.push(delete);
        }
        let mut collection_params = ns_params();
        collection_params.push(params::pretty());
        routes.push(Route {
            path: collection.clone(),
            params: collection_params,
            operations: ops,
        });

        // One object: read, replace, patch, delete.
        let item_params = || {
            let mut p = vec![params::name(kind)];
            p.extend(ns_params());
            p.push(params::pretty());
            p
        };
        let mut read = self.op(
            "get",
            "get",
            format!("read{gv}{scope}{kind}"),
            format!("read the specified {kind}"),
        );
        read.responses = vec![(200, self.kind_body())];
        let replace = self.replace(
            format!("replace{gv}{scope}{kind}"),
            format!("replace the specified {kind}"),
            self.kind_body(),
            self.gvk(),
        );
        let patch = self.patch(
            format!("patch{gv}{scope}{kind}"),
            format!("partially update the specified {kind}"),
            self.kind_body(),
            self.gvk(),
        );
        let mut delete = self.op(
            "delete",
            "delete",
            format!("delete{gv}{scope}{kind}"),
            format!("delete {}", article(kind)),
        );
        delete.params = params::delete();
        delete.body = Some((Body::Definition(status_like("DeleteOptions")), false));
        delete.responses = vec![
            (200, Body::Definition(status_like("Status"))),
            (202, Body::Definition(status_like("Status"))),
        ];
        routes.push(Route {
            path: item.clone(),
            params: item_params(),
            operations: vec![read, replace, patch, delete],
        });

        // Subresources.
        for sub in res.subresources {
            if let Some(route) = self.subresource(*sub, &item, item_params()) {
                routes.push(route);
            }
        }

        // Lists across namespaces.
        if res.namespaced() {
            let mut all = self.op(
                "get",
                "list",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
            );
            all.produces = Produces::Stream;
            all.responses = vec![(200, self.list_body())];
            let mut p = params::list();
            p.push(params::pretty());
            p.sort_by_key(|p| p.name);
            routes.push(Route {
                path: format!("{prefix}/{}", res.plural),
                params: p,
                operations: vec![all],
            });
        }

        // Deprecated watch paths.
        let watch_event = Body::Definition(status_like("WatchEvent"));
        let watch_params = |extra: Vec<Param>| {
            let mut p = params::list();
            p.extend(extra);
            p.push(params::pretty());
            p.sort_by_key(|p| p.name);
            p
        };
        let mut watch_list = self.op(
            "get",
            "watchlist",
            format!("watch{gv}{scope}{kind}List"),
            format!(
                "watch individual changes to a list of {kind}. deprecated: use the 'watch' \
                 parameter with a list operation instead."
            ),
        );
        watch_list.produces = Produces::Stream;
        watch_list.responses = vec![(200, watch_event.clone())];
        routes.push(Route {
            path: format!("{prefix}/watch{ns_segment}/{}", res.plural),
            params: watch_params(ns_params()),
            operations: vec![watch_list],
        });
        let mut watch_one = self.op(
            "get",
            "watch",
            format!("watch{gv}{scope}{kind}"),
            format!(
                "watch changes to an object of kind {kind}. deprecated: use the 'watch' \
                 parameter with a list operation instead, filtered to a single item with the \
                 'fieldSelector' parameter."
            ),
        );
        watch_one.produces = Produces::Stream;
        watch_one.responses = vec![(200, watch_event.clone())];
        let mut one_params = vec![params::name(kind)];
        one_params.extend(ns_params());
        routes.push(Route {
            path: format!("{prefix}/watch{ns_segment}/{}/{{name}}", res.plural),
            params: watch_params(one_params),
            operations: vec![watch_one],
        });
        if res.namespaced() {
            let mut watch_all = self.op(
                "get",
                "watchlist",
                format!("watch{gv}{kind}ListForAllNamespaces"),
                format!(
                    "watch individual changes to a list of {kind}. deprecated: use the \
                     'watch' parameter with a list operation instead."
                ),
            );
            watch_all.produces = Produces::Stream;
            watch_all.responses = vec![(200, watch_event)];
            routes.push(Route {
                path: format!("{prefix}/watch/{}", res.plural),
                params: watch_params(Vec::new()),
                operations: vec![watch_all],
            });
        }
        routes
    }

    fn replace(
        &self,
        id: String,
        description: String,
        body: Body,
        gvk: Option<(String, String, String)>,
    ) -> Operation {
        let mut op = self.op("put", "put", id, description);
        op.gvk = gvk;
        op.params = params::create_or_replace();
        op.body = Some((body.clone(), true));
        op.responses = vec![(200, body.clone()), (201, body)];
        op
    }

    fn patch(
        &self,
        id: String,
        description: String,
        body: Body,
        gvk: Option<(String, String, String)>,
    ) -> Operation {
        let mut op = self.op("patch", "patch", id, description);
        op.gvk = gvk;
        op.params = params::patch();
        op.body = Some((Body::Definition(status_like("Patch")), true));
        op.consumes = Some(PATCH_TYPES);
        op.responses = vec![(200, body.clone()), (201, body)];
        op
    }

    fn subresource(&self, sub: Subresource, item: &str, item_params: Vec<Param>) -> Option<Route> {
        let (gv, scope, kind) = (&self.gv, self.scope(), self.res.kind);
        let (g, v, k) = sub.kind(self.res);
        let sub_gvk = Some((g.to_string(), v.to_string(), k.to_string()));
        let sub_body = Body::Definition(schema::definition_name_for(g, v, k));
        let name = sub.name();
        let suffix = upper_first(name);
        let id = |verb: &str| format!("{verb}{gv}{scope}{kind}{suffix}");
        let operations = match sub {
            Subresource::Status | Subresource::Scale => {
                let mut read = self.op(
                    "get",
                    "get",
                    id("read"),
                    format!("read {name} of the specified {kind}"),
                );
                read.gvk = sub_gvk.clone();
                read.responses = vec![(200, sub_body.clone())];
                vec![
                    read,
                    self.replace(
                        id("replace"),
                        format!("replace {name} of the specified {kind}"),
                        sub_body.clone(),
                        sub_gvk.clone(),
                    ),
                    self.patch(
                        id("patch"),
                        format!("partially update {name} of the specified {kind}"),
                        sub_body,
                        sub_gvk,
                    ),
                ]
            }
            Subresource::Finalize => vec![self.replace(
                id("replace"),
                format!("replace finalize of the specified {kind}"),
                sub_body,
                sub_gvk,
            )],
            Subresource::Binding | Subresource::Token => {
                let mut create = self.op(
                    "post",
                    "post",
                    id("create"),
                    format!("create {name} of {}", article(kind)),
                );
                create.gvk = sub_gvk;
                create.params = params::create_or_replace();
                create.body = Some((sub_body.clone(), true));
                create.responses = vec![
                    (200, sub_body.clone()),
                    (201, sub_body.clone()),
                    (202, sub_body),
                ];
                vec![create]
            }
            // Streaming connections (`connect` operations) are not described.
            Subresource::Exec | Subresource::PortForward | Subresource::Attach => return None,
            Subresource::Log => {
                let mut read = self.op(
                    "get",
                    "get",
                    id("read"),
                    format!("read log of the specified {kind}"),
                );
                read.gvk = sub_gvk;
                read.produces = Produces::Text;
                read.responses = vec![(200, Body::Text)];
                let mut p = item_params;
                p.extend(params::log());
                p.sort_by_key(|p| p.name);
                return Some(Route {
                    path: format!("{item}/{name}"),
                    params: p,
                    operations: vec![read],
                });
            }
        };
        Some(Route {
            path: format!("{item}/{name}"),
            params: item_params,
            operations,
        })
    }
}

/// `a Pod`, `an Ingress`.
fn article(kind: &str) -> String {
    let vowel = kind.chars().next().is_some_and(|c| "AEIOU".contains(c));
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// The `meta/v1` definition of a shared envelope.
fn status_like(kind: &str) -> String {
    format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")
}

fn discovery(path: String, id: String, description: &str, tag: String, def: &str) -> Route {
    Route {
        path,
        params: Vec::new(),
        operations: vec![Operation {
            method: "get",
            id,
            description: description.into(),
            action: "",
            gvk: None,
            tag,
            params: Vec::new(),
            body: None,
            consumes: Some(&[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ]),
            produces: Produces::Object,
            responses: vec![(200, Body::Definition(status_like(def)))],
        }],
    }
}

/// Every route of one group version: its discovery document and its resources.
pub(super) fn group_version<'a>(
    group: &str,
    version: &str,
    resources: impl Iterator<Item = &'a Resource>,
) -> Vec<Route> {
    let tag = format!("{}_{version}", group_tag(group));
    let mut routes = vec![discovery(
        format!("{}/", gv_prefix(group, version)),
        format!(
            "get{}{}APIResources",
            group_camel(group),
            upper_first(version)
        ),
        "get available resources",
        tag,
        "APIResourceList",
    )];
    for res in resources {
        routes.extend(ResourceOps::new(res).routes());
    }
    routes
}

/// `/apis/<group>/`: the group's discovery document.
pub(super) fn group(group: &str) -> Vec<Route> {
    vec![discovery(
        format!("/apis/{group}/"),
        format!("get{}APIGroup", group_camel(group)),
        "get information of a group",
        group_tag(group),
        "APIGroup",
    )]
}

/// `/api/`: the core group's versions.
pub(super) fn core_versions() -> Vec<Route> {
    vec![discovery(
        "/api/".into(),
        "getCoreAPIVersions".into(),
        "get available API versions",
        "core".into(),
        "APIVersions",
    )]
}

/// `/apis/`: every named group.
pub(super) fn groups() -> Vec<Route> {
    vec![discovery(
        "/apis/".into(),
        "getAPIVersions".into(),
        "get available API versions",
        "apis".into(),
        "APIGroupList",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_real_servers_conventions() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_tag("rbac.authorization.k8s.io"), "rbacAuthorization");
        assert_eq!(group_tag("apps"), "apps");
        assert_eq!(article("Ingress"), "an Ingress");
        assert_eq!(article("Pod"), "a Pod");
    }
}
