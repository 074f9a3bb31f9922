//! revisions (placeholder)
