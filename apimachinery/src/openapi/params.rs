//! The query and path parameters operations take, shared by the v2 and v3 renderings.

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
}

/// The JSON type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    String,
    Integer,
    Boolean,
}

impl Type {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        }
    }
}

/// One non-body parameter.
#[derive(Debug, Clone)]
pub(super) struct Param {
    pub name: &'static str,
    pub location: In,
    pub ty: Type,
    pub description: String,
}

impl Param {
    pub(super) fn required(&self) -> bool {
        self.location == In::Path
    }
}

fn query(name: &'static str, ty: Type, description: &str) -> Param {
    Param {
        name,
        location: In::Query,
        ty,
        description: description.to_string(),
    }
}

/// `{name}` in an item path.
pub(super) fn name(kind: &str) -> Param {
    Param {
        name: "name",
        location: In::Path,
        ty: Type::String,
        description: format!("name of the {kind}"),
    }
}

/// `{namespace}` in a namespaced path.
pub(super) fn namespace() -> Param {
    Param {
        name: "namespace",
        location: In::Path,
        ty: Type::String,
        description: "object name and auth scope, such as for teams and projects".into(),
    }
}

pub(super) fn pretty() -> Param {
    query(
        "pretty",
        Type::String,
        "If 'true', the output is indented for reading.",
    )
}

fn dry_run() -> Param {
    query(
        "dryRun",
        Type::String,
        "When present, the request is processed fully but nothing is persisted. The only \
         valid value is All.",
    )
}

fn field_manager(patch: bool) -> Param {
    let mut description = String::from(
        "fieldManager names the actor making these changes for managed-fields tracking: at \
         most 128 printable characters.",
    );
    if patch {
        description.push_str(" Required for apply patches, optional for the other patch types.");
    }
    query("fieldManager", Type::String, &description)
}

fn field_validation() -> Param {
    query(
        "fieldValidation",
        Type::String,
        "fieldValidation tells the server what to do with unknown or duplicate fields in the \
         request body (POST/PUT/PATCH): Ignore drops them silently, Warn drops them and \
         reports each in a Warning header (the default), Strict fails the request with a \
         BadRequest error listing them.",
    )
}

fn force() -> Param {
    query(
        "force",
        Type::Boolean,
        "Force makes an apply patch take ownership of fields other managers own instead of \
         failing with a conflict. Must be unset for other patch types.",
    )
}

fn grace_period_seconds() -> Param {
    query(
        "gracePeriodSeconds",
        Type::Integer,
        "Seconds to wait before the object is deleted; zero deletes immediately; unset uses \
         the kind's default.",
    )
}

fn orphan_dependents() -> Param {
    query(
        "orphanDependents",
        Type::Boolean,
        "Deprecated: use propagationPolicy. Whether dependents are orphaned rather than \
         garbage collected.",
    )
}

fn propagation_policy() -> Param {
    query(
        "propagationPolicy",
        Type::String,
        "How dependents are garbage collected: Orphan, Background or Foreground.",
    )
}

/// The selection and paging parameters of list, watch and deletecollection.
fn list_options(watch: bool) -> Vec<Param> {
    let mut params = Vec::new();
    if watch {
        params.push(query(
            "allowWatchBookmarks",
            Type::Boolean,
            "Ask for BOOKMARK watch events carrying only a resourceVersion.",
        ));
    }
    params.extend([
        query(
            "continue",
            Type::String,
            "The continue token of a previous paged list response, to fetch the next page.",
        ),
        query(
            "fieldSelector",
            Type::String,
            "Restrict the returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            Type::String,
            "Restrict the returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            Type::Integer,
            "The most objects to return in one response; more are fetched with the continue \
             token of the response.",
        ),
        query(
            "resourceVersion",
            Type::String,
            "Constrains which resource versions the request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            Type::String,
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            Type::Boolean,
            "With watch=true, start the stream with synthetic ADDED events for the current \
             state, followed by a bookmark.",
        ),
        query(
            "timeoutSeconds",
            Type::Integer,
            "Timeout for the list/watch call, whatever the activity.",
        ),
    ]);
    if watch {
        params.push(query(
            "watch",
            Type::Boolean,
            "Watch for changes to the described resources and return them as a stream of \
             events.",
        ));
    }
    params
}

/// Parameters of a list (or watch) operation.
pub(super) fn list() -> Vec<Param> {
    list_options(true)
}

pub(super) fn create_or_replace() -> Vec<Param> {
    vec![dry_run(), field_manager(false), field_validation()]
}

pub(super) fn patch() -> Vec<Param> {
    vec![dry_run(), field_manager(true), field_validation(), force()]
}

pub(super) fn delete() -> Vec<Param> {
    vec![
        dry_run(),
        grace_period_seconds(),
        orphan_dependents(),
        propagation_policy(),
    ]
}

pub(super) fn delete_collection() -> Vec<Param> {
    let mut params = list_options(false);
    params.extend(delete());
    params.sort_by_key(|p| p.name);
    params
}

/// Parameters of `pods/{name}/log`.
pub(super) fn log() -> Vec<Param> {
    vec![
        query(
            "container",
            Type::String,
            "The container to stream logs of. Defaults to the only container if there is one.",
        ),
        query("follow", Type::Boolean, "Follow the log stream of the pod."),
        query(
            "insecureSkipTLSVerifyBackend",
            Type::Boolean,
            "Skip verifying the serving certificate of the node the logs come from.",
        ),
        query(
            "limitBytes",
            Type::Integer,
            "The most bytes of log to return before stopping.",
        ),
        query(
            "previous",
            Type::Boolean,
            "Return the logs of the previous, terminated container.",
        ),
        query(
            "sinceSeconds",
            Type::Integer,
            "Return only logs written in the last this many seconds.",
        ),
        query(
            "tailLines",
            Type::Integer,
            "Return only this many lines from the end of the log.",
        ),
        query(
            "timestamps",
            Type::Boolean,
            "Prefix every line of output with an RFC3339 timestamp.",
        ),
    ]
}
