//! Label and field selectors: the `?labelSelector=` and `?fieldSelector=` query syntaxes, the
//! `metav1.LabelSelector` objects that workloads carry, and matching objects against them.
//!
//! Parsing follows `k8s.io/apimachinery/pkg/labels` and `.../fields`, including the wording of
//! their errors, because those messages reach users verbatim in 400 responses.

mod error;
mod field;
mod label;
mod names;

pub use error::SelectorError;
pub use field::FieldSelector;
pub use label::{LabelSelector, Operator, Requirement};
