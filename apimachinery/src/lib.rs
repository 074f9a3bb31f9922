//! What Kubernetes API objects mean, independent of how they are served or stored.
//!
//! * [`protobuf`]: decoding Kubernetes protobuf request bodies into JSON.
//! * [`registry`]: every resource the API serves (group, version, kind, plural, scope, short
//!   names, verbs, subresources) and the typed decoding that finds unknown fields.
//! * [`defaults`] and [`validation`]: what the API server fills in and what it refuses.
//! * [`patch`]: JSON patch, merge patch, strategic merge patch and server-side apply.
//! * [`selectors`]: label and field selectors.
//! * [`table`]: the `meta.k8s.io/v1` Table columns kubectl prints for each kind.
//! * [`openapi`]: the OpenAPI v2 and v3 documents generated from the types.

mod convert;
pub mod defaults;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod selectors;
pub mod table;
pub mod validation;

pub use registry::{DecodeError, Decoded, Registry, Resource, Scope, Subresource};
pub use selectors::{FieldSelector, LabelSelector, SelectorError};
pub use table::IncludeObject;
