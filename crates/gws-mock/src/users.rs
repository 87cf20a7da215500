//! The node's users and their DNs (by default `agent<DN>` / `password`). Real GWS reads
//! them from Configuration Server; here they come from the config file, listed one by one or
//! made from DN ranges, so 2,000 agents cost no memory until they log in.

use serde::{Deserialize, Serialize};

/// A desktop user as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `userName`, e.g. `agent7001`; also the T-Library `AgentID`.
    pub name: String,
    /// The DN of the user's voice device.
    pub dn: String,
}

/// One user listed in the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub password: String,
    pub dn: String,
}

/// Users made from a DN range: `{ dns = "7000-7999", name = "agent{dn}", password = "password" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRange {
    /// `"7000-7999"`: digits, both ends of the same length.
    pub dns: String,
    /// The user name, with `{dn}` standing for the DN.
    pub name: String,
    pub password: String,
}

impl UserRange {
    /// The default users: `agent<DN>` / `password` for the softphone and PSTN DN ranges.
    pub fn defaults() -> Vec<UserRange> {
        ["7000-7999", "8000-8999"]
            .into_iter()
            .map(|dns| UserRange {
                dns: dns.into(),
                name: "agent{dn}".into(),
                password: "password".into(),
            })
            .collect()
    }

    /// Checks the range and that the name template holds `{dn}` once.
    pub fn validate(&self) -> Result<(), String> {
        self.bounds()?;
        if self.name.matches("{dn}").count() != 1 {
            return Err(format!("`name` \"{}\" must contain {{dn}} once", self.name));
        }
        Ok(())
    }

    fn bounds(&self) -> Result<(u64, u64, usize), String> {
        let (lo, hi) = self.dns.split_once('-').unwrap_or((&self.dns, &self.dns));
        let (lo, hi) = (lo.trim(), hi.trim());
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(lo) || !digits(hi) || lo.len() != hi.len() {
            return Err(format!(
                "`dns` \"{}\" must be digits like 7000-7999",
                self.dns
            ));
        }
        let (l, h) = (
            lo.parse::<u64>().unwrap_or(0),
            hi.parse::<u64>().unwrap_or(0),
        );
        if l > h {
            return Err(format!("`dns` \"{}\" ends before it starts", self.dns));
        }
        Ok((l, h, lo.len()))
    }

    /// The DN this range gives `name`, if the name fits the template and the DN is in range.
    fn dn_of(&self, name: &str) -> Option<String> {
        let (prefix, suffix) = self.name.split_once("{dn}")?;
        let dn = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
        let (lo, hi, width) = self.bounds().ok()?;
        if dn.len() != width || !dn.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = dn.parse().ok()?;
        (lo..=hi).contains(&n).then(|| dn.to_owned())
    }
}

/// Who may log in.
#[derive(Clone, Debug, Default)]
pub struct UserTable {
    entries: Vec<UserEntry>,
    ranges: Vec<UserRange>,
}

impl UserTable {
    pub fn new(entries: Vec<UserEntry>, ranges: Vec<UserRange>) -> Self {
        UserTable { entries, ranges }
    }

    /// The user if the name is known and the password matches.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<User> {
        if let Some(e) = self.entries.iter().find(|e| e.name == name) {
            return (e.password == password).then(|| User {
                name: e.name.clone(),
                dn: e.dn.clone(),
            });
        }
        self.ranges.iter().find_map(|r| {
            let dn = r.dn_of(name)?;
            (r.password == password).then(|| User {
                name: name.to_owned(),
                dn,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ranges_map_agent_dn_with_password() {
        let t = UserTable::new(Vec::new(), UserRange::defaults());
        let u = t.authenticate("agent7001", "password").unwrap();
        assert_eq!(u.dn, "7001");
        assert_eq!(t.authenticate("agent8999", "password").unwrap().dn, "8999");
        assert_eq!(t.authenticate("agent7001", "wrong"), None);
        assert_eq!(t.authenticate("agent9001", "password"), None);
        assert_eq!(t.authenticate("agent700", "password"), None);
        assert_eq!(t.authenticate("agent70011", "password"), None);
        assert_eq!(t.authenticate("agent+7001", "password"), None);
        assert_eq!(t.authenticate("", ""), None);
    }

    #[test]
    fn listed_users_win_over_ranges() {
        let t = UserTable::new(
            vec![UserEntry {
                name: "agent7001".into(),
                password: "secret".into(),
                dn: "8001".into(),
            }],
            UserRange::defaults(),
        );
        assert_eq!(t.authenticate("agent7001", "password"), None);
        assert_eq!(t.authenticate("agent7001", "secret").unwrap().dn, "8001");
    }

    #[test]
    fn templates_with_suffix_and_validation() {
        let r = UserRange {
            dns: "100-199".into(),
            name: "u{dn}@lab".into(),
            password: "p".into(),
        };
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.dn_of("u150@lab").as_deref(), Some("150"));
        assert_eq!(r.dn_of("u150"), None);
        let bad = UserRange {
            name: "agent".into(),
            ..r.clone()
        };
        assert!(bad.validate().is_err());
        let bad = UserRange {
            dns: "199-100".into(),
            ..r
        };
        assert!(bad.validate().is_err());
    }
}
