//! `imagePullPolicy` semantics: whether the pod worker must contact the registry.

use super::reference::ImageRef;

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// What the pod worker must do before starting a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Resolve the reference at the registry (layers already present are not fetched again).
    Pull,
    /// Use the local image.
    UseLocal,
    /// `Never` and the image is not present: the kubelet's `ErrImageNeverPull`.
    NeverPullMissing,
}

impl PullPolicy {
    /// The policy of a container spec, defaulted as the API server does when it is unset:
    /// `Always` for `:latest` or an untagged, undigested name, else `IfNotPresent`.
    pub fn for_container(policy: Option<&str>, image: &ImageRef) -> Self {
        match policy {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ if image.digest().is_none() && image.tag().is_none_or(|t| t == "latest") => {
                Self::Always
            }
            _ => Self::IfNotPresent,
        }
    }

    /// Decide, given whether the image is already in the local store.
    pub fn decide(self, present: bool) -> PullDecision {
        match (self, present) {
            (Self::Always, _) | (Self::IfNotPresent, false) => PullDecision::Pull,
            (Self::IfNotPresent, true) | (Self::Never, true) => PullDecision::UseLocal,
            (Self::Never, false) => PullDecision::NeverPullMissing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_tag() {
        let latest = ImageRef::parse("nginx").unwrap();
        let tagged = ImageRef::parse("nginx:1.27").unwrap();
        let pinned = ImageRef::parse(
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(PullPolicy::for_container(None, &latest), PullPolicy::Always);
        assert_eq!(
            PullPolicy::for_container(None, &tagged),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::for_container(None, &pinned),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::for_container(Some("Never"), &latest),
            PullPolicy::Never
        );
        assert_eq!(
            PullPolicy::for_container(Some("IfNotPresent"), &latest),
            PullPolicy::IfNotPresent
        );
    }

    #[test]
    fn decisions() {
        use PullDecision::*;
        assert_eq!(PullPolicy::Always.decide(true), Pull);
        assert_eq!(PullPolicy::Always.decide(false), Pull);
        assert_eq!(PullPolicy::IfNotPresent.decide(true), UseLocal);
        assert_eq!(PullPolicy::IfNotPresent.decide(false), Pull);
        assert_eq!(PullPolicy::Never.decide(true), UseLocal);
        assert_eq!(PullPolicy::Never.decide(false), NeverPullMissing);
    }
}
