//! The kernel command line's `skiff.*` words.

/// What init reads from `/proc/cmdline`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `skiff.config=`: a path inside the initramfs/rootfs or an `http://` URL.
    pub config: Option<String>,
    /// `skiff.hostname=`: a name to use until a config sets one.
    pub hostname: Option<String>,
}

impl Cmdline {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for word in text.split_ascii_whitespace() {
            if let Some(value) = word.strip_prefix("skiff.config=") {
                out.config = (!value.is_empty()).then(|| value.to_owned());
            } else if let Some(value) = word.strip_prefix("skiff.hostname=") {
                out.hostname = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_skiff_words_only() {
        let c = Cmdline::parse(
            "console=ttyS0 quiet skiff.config=http://10.0.2.2:8080/cp.yaml skiff.hostname=n1\n",
        );
        assert_eq!(c.config.as_deref(), Some("http://10.0.2.2:8080/cp.yaml"));
        assert_eq!(c.hostname.as_deref(), Some("n1"));
        assert_eq!(Cmdline::parse("skiff.config= ro"), Cmdline::default());
    }
}
