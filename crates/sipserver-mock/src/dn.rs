//! The switch's DN plan: ranges of softphone DNs (SIP-registered) and PSTN DNs (reached through
//! the PSTN gateway at their external number). Ranges keep 100k DNs cheap: nothing is allocated
//! per DN until it is used.

use serde::{Deserialize, Serialize};

/// The two kinds of agent DN in the DR scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnKind {
    /// Ownership and service follow the phone's SIP REGISTER.
    Softphone,
    /// No SIP registration; ownership and service follow the desktop's T-Lib registration.
    Pstn,
}

/// One range of DNs in configuration: `{ range = "8000-8999", kind = "pstn", external = "+1555{dn}" }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnRange {
    /// `"7000-7999"` or a single DN `"7001"`: digits, both ends of the same length.
    pub range: String,
    pub kind: DnKind,
    /// PSTN DNs: the external number, `{dn}` replaced by the DN (default `{dn}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
}

impl DnRange {
    pub fn new(range: &str, kind: DnKind) -> Self {
        DnRange {
            range: range.into(),
            kind,
            external: None,
        }
    }

    /// The default plan (docs/architecture.md §2): 7000–7999 softphone, 8000–8999 PSTN.
    pub fn defaults() -> Vec<DnRange> {
        vec![
            DnRange::new("7000-7999", DnKind::Softphone),
            DnRange {
                external: Some("+1555{dn}".into()),
                ..DnRange::new("8000-8999", DnKind::Pstn)
            },
        ]
    }

    fn bounds(&self) -> Result<(u64, u64, usize), String> {
        let (lo, hi) = self
            .range
            .split_once('-')
            .unwrap_or((&self.range, &self.range));
        let (lo, hi) = (lo.trim(), hi.trim());
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(lo) || !digits(hi) || lo.len() != hi.len() {
            return Err(format!(
                "`range` \"{}\" must be digits like 7000-7999",
                self.range
            ));
        }
        let (l, h) = (
            lo.parse::<u64>().unwrap_or(0),
            hi.parse::<u64>().unwrap_or(0),
        );
        if l > h {
            return Err(format!("`range` \"{}\" ends before it starts", self.range));
        }
        Ok((l, h, lo.len()))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.bounds()?;
        if self.kind == DnKind::Softphone && self.external.is_some() {
            return Err("`external` is only for pstn DNs".into());
        }
        Ok(())
    }
}

/// What the plan says about one DN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnInfo {
    pub kind: DnKind,
    /// The number the gateway is called at (PSTN DNs).
    pub external: Option<String>,
}

#[derive(Clone, Debug)]
struct CompiledRange {
    lo: u64,
    hi: u64,
    width: usize,
    kind: DnKind,
    external: Option<String>,
}

/// The compiled DN plan.
#[derive(Clone, Debug, Default)]
pub struct DnPlan {
    ranges: Vec<CompiledRange>,
}

impl DnPlan {
    pub fn new(ranges: &[DnRange]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(ranges.len());
        for (i, r) in ranges.iter().enumerate() {
            r.validate().map_err(|e| format!("dns[{i}]: {e}"))?;
            let (lo, hi, width) = r.bounds()?;
            compiled.push(CompiledRange {
                lo,
                hi,
                width,
                kind: r.kind,
                external: r.external.clone(),
            });
        }
        Ok(DnPlan { ranges: compiled })
    }

    /// The DN's kind and external number, or None when the switch has no such DN.
    pub fn lookup(&self, dn: &str) -> Option<DnInfo> {
        if dn.is_empty() || dn.len() > 18 || !dn.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = dn.parse().ok()?;
        let r = self
            .ranges
            .iter()
            .find(|r| r.width == dn.len() && (r.lo..=r.hi).contains(&n))?;
        let external = match r.kind {
            DnKind::Pstn => Some(r.external.as_deref().unwrap_or("{dn}").replace("{dn}", dn)),
            DnKind::Softphone => None,
        };
        Some(DnInfo {
            kind: r.kind,
            external,
        })
    }

    /// How many DNs the plan holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.hi - r.lo + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan() {
        let plan = DnPlan::new(&DnRange::defaults()).unwrap();
        assert_eq!(plan.lookup("7001").unwrap().kind, DnKind::Softphone);
        let pstn = plan.lookup("8002").unwrap();
        assert_eq!(pstn.kind, DnKind::Pstn);
        assert_eq!(pstn.external.as_deref(), Some("+15558002"));
        assert!(plan.lookup("9001").is_none());
        assert!(plan.lookup("07001").is_none());
        assert!(plan.lookup("70a1").is_none());
        assert!(plan.lookup("").is_none());
        assert_eq!(plan.len(), 2000);
    }

    #[test]
    fn bad_ranges_are_named() {
        assert!(DnPlan::new(&[DnRange::new("7000-699", DnKind::Softphone)]).is_err());
        assert!(DnPlan::new(&[DnRange::new("7999-7000", DnKind::Softphone)]).is_err());
        assert!(DnPlan::new(&[DnRange::new("x", DnKind::Softphone)])
            .unwrap_err()
            .contains("dns[0]"));
        let single = DnPlan::new(&[DnRange::new("5005", DnKind::Softphone)]).unwrap();
        assert!(single.lookup("5005").is_some());
        assert!(single.lookup("5006").is_none());
    }
}
