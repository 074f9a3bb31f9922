//! Boot timelines from a console log: init prints `skiff: boot phase <name> at <s>s (+<d>s)`.

/// One boot phase and when it was reached, in seconds since the kernel started.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub at: f64,
}

/// The phases in the order they appear. A node that booted several times (silent-boot retry
/// or reboot) shows each boot's phases; `kernel` starts a new boot.
pub fn parse(console: &str) -> Vec<Phase> {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.split("skiff: boot phase ").nth(1)?;
            let (name, rest) = rest.split_once(" at ")?;
            let seconds = rest.split('s').next()?.trim().parse::<f64>().ok()?;
            Some(Phase {
                name: name.to_owned(),
                at: seconds,
            })
        })
        .collect()
}

/// The phases of the last boot only.
pub fn last_boot(phases: &[Phase]) -> &[Phase] {
    let start = phases.iter().rposition(|p| p.name == "kernel").unwrap_or(0);
    &phases[start..]
}

/// `kernel 2.104s → init +0.050s → ...`.
pub fn render(phases: &[Phase]) -> String {
    let mut out = String::new();
    let mut previous: Option<f64> = None;
    for p in phases {
        if !out.is_empty() {
            out.push_str(" → ");
        }
        match previous {
            None => out.push_str(&format!("{} {:.3}s", p.name, p.at)),
            Some(prev) => out.push_str(&format!("{} +{:.3}s", p.name, p.at - prev)),
        }
        previous = Some(p.at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[    0.000000] Linux version\r\nskiff: boot phase kernel at 2.100s (+2.100s)\nnoise\nskiff: boot phase init at 2.300s (+0.200s)\nskiff: boot phase ready at 3.500s (+1.200s)\nskiff: boot phase kernel at 1.900s (+1.900s)\nskiff: boot phase init at 2.000s (+0.100s)\n";

    #[test]
    fn parses_phases_and_the_last_boot() {
        let phases = parse(LOG);
        assert_eq!(phases.len(), 5);
        assert_eq!(
            phases[2],
            Phase {
                name: "ready".into(),
                at: 3.5
            }
        );
        let last = last_boot(&phases);
        assert_eq!(last.len(), 2);
        assert_eq!(render(last), "kernel 1.900s → init +0.100s");
    }
}
