//! Real partitions: iptables rules between the nodes' loopback addresses (every node binds its
//! own 127.x address, so a rule names exactly the nodes it separates). Rules go in the INPUT
//! chain (loopback traffic passes it once) tagged with a comment so that `heal all` finds them.

use std::process::Command;

use anyhow::{bail, Context};

/// The comment every rule carries.
pub const TAG: &str = "drlab-fault";

/// One rule: the match and target after `iptables -I INPUT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptablesRule(pub Vec<String>);

impl IptablesRule {
    /// A rule from its words.
    pub fn new<S: AsRef<str>>(words: &[S]) -> Self {
        IptablesRule(words.iter().map(|w| w.as_ref().to_owned()).collect())
    }

    fn spec(&self) -> Vec<String> {
        let mut spec = vec!["INPUT".to_owned()];
        spec.extend(self.0.iter().cloned());
        spec.extend(["-m", "comment", "--comment", TAG].map(String::from));
        spec
    }

    /// `iptables -I INPUT …`.
    pub fn insert(&self) -> anyhow::Result<()> {
        run("-I", &self.spec())
    }

    /// `iptables -D INPUT …` (a rule already gone is fine).
    pub fn delete(&self) {
        let _ = run("-D", &self.spec());
    }

    /// The rule as a line for humans.
    pub fn describe(&self) -> String {
        format!("iptables -I INPUT {}", self.0.join(" "))
    }
}

fn run(op: &str, spec: &[String]) -> anyhow::Result<()> {
    let out = Command::new("iptables")
        .arg(op)
        .args(spec)
        .output()
        .context("cannot run iptables (installed? root?)")?;
    if !out.status.success() {
        bail!(
            "iptables {op} {}: {}",
            spec.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether iptables can be used here (root and the command present).
pub fn usable() -> bool {
    Command::new("iptables")
        .args(["-L", "INPUT", "-n"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Deletes every rule tagged [`TAG`] in INPUT; returns how many.
pub fn delete_tagged() -> anyhow::Result<usize> {
    let out = Command::new("iptables")
        .args(["-S", "INPUT"])
        .output()
        .context("cannot run iptables (installed? root?)")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut removed = 0;
    for line in listing.lines().filter(|l| l.contains(TAG)) {
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        // `iptables -S` prints the words shell-quoted only where needed; the tag has no spaces.
        let words: Vec<String> = rest
            .split_whitespace()
            .map(|w| w.replace('"', ""))
            .collect();
        run("-D", &words)?;
        removed += 1;
    }
    Ok(removed)
}

/// Set of rules removed when dropped (a scenario's fault, even when the scenario fails).
#[derive(Default, Debug)]
pub struct Installed(Vec<IptablesRule>);

impl Installed {
    pub fn insert(&mut self, rule: IptablesRule) -> anyhow::Result<()> {
        rule.insert()?;
        self.0.push(rule);
        Ok(())
    }

    /// Removes the rules equal to `rules`.
    pub fn remove(&mut self, rules: &[IptablesRule]) {
        self.0.retain(|r| {
            let gone = rules.contains(r);
            if gone {
                r.delete();
            }
            !gone
        });
    }

    /// Leaves the rules in place when dropped (`drlab fault` exits; `heal` removes them).
    pub fn keep(mut self) {
        self.0.clear();
    }

    pub fn clear(&mut self) {
        for r in self.0.drain(..) {
            r.delete();
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.clear();
    }
}
