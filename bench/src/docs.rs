//! Replacing one program's generated section of `docs/benchmarks.md`, between
//! `<!-- NAME:start -->` and `<!-- NAME:end -->`, leaving the rest of the file alone.

use std::path::Path;

use anyhow::{Context, Result};

/// Replace section `name` in `path` with `section`, creating the file (with `intro`) or
/// appending the markers when they are missing.
pub fn write_section(path: &Path, name: &str, intro: &str, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => intro.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, splice(&old, name, section))
        .with_context(|| format!("write {}", path.display()))
}

/// `text` with everything between section `name`'s markers replaced by `section`.
pub fn splice(text: &str, name: &str, section: &str) -> String {
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let block = format!("{start}\n{}\n{end}", section.trim_end());
    match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &text[..s], &text[e + end.len()..]),
        _ => {
            let mut t = text.trim_end().to_owned();
            if !t.is_empty() {
                t.push_str("\n\n");
            }
            format!("{t}{block}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_its_own_section() {
        let text = "# B\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\n<!-- b:start -->\nold b\n<!-- b:end -->\ntail\n";
        let out = splice(text, "b", "new b\n");
        assert!(out.contains("old a"), "{out}");
        assert!(
            out.contains("<!-- b:start -->\nnew b\n<!-- b:end -->\ntail"),
            "{out}"
        );
        assert!(!out.contains("old b"), "{out}");
        assert_eq!(splice(&out, "b", "new b"), out);
    }

    #[test]
    fn appends_missing_markers_and_creates_the_file() {
        assert_eq!(
            splice("# B\n", "x", "fig"),
            "# B\n\n<!-- x:start -->\nfig\n<!-- x:end -->\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs/benchmarks.md");
        write_section(&path, "x", "# Benchmarks\n", "fig").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Benchmarks\n\n<!-- x:start -->"),
            "{text}"
        );
    }
}
