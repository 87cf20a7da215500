//! The result of a scenario run: one row per id and variant (pass or FAIL, the time observed
//! since the fault, one line of evidence, the id's statement), as a table or as JSON.

use serde::Serialize;
use serde_json::json;

use super::statements::statement;

/// One checked id.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub scenario: String,
    pub variant: String,
    pub pass: bool,
    /// Milliseconds from the fault (or the step) to what proved the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    pub evidence: String,
    /// Wall-clock ms when the check was decided (the report's marker for a failure).
    #[serde(skip)]
    pub at_ms: u64,
}

impl Row {
    /// The row as one line of the table.
    pub fn line(&self) -> String {
        let ms = self.ms.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
        let mut evidence: String = self.evidence.chars().take(60).collect();
        if self.evidence.chars().count() > 60 {
            evidence.pop();
            evidence.push('…');
        }
        format!(
            "{:<6} {:<4} {:<7} {:>7}  {:<60}  {}\n",
            self.id,
            self.variant,
            if self.pass { "pass" } else { "FAIL" },
            ms,
            evidence,
            statement(&self.id)
        )
    }
}

/// Every row of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub wall_ms: u64,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.rows.iter().filter(|r| r.pass).count()
    }

    pub fn failed(&self) -> usize {
        self.rows.len() - self.passed()
    }

    /// Whether every row passed (and there is one).
    pub fn ok(&self) -> bool {
        !self.rows.is_empty() && self.failed() == 0
    }

    /// The failing rows, one line each (for test failures).
    pub fn failures(&self) -> String {
        self.rows
            .iter()
            .filter(|r| !r.pass)
            .map(|r| format!("{} ({} {}): {}\n", r.id, r.scenario, r.variant, r.evidence))
            .collect()
    }

    /// The table.
    pub fn render(&self) -> String {
        let mut out = Report::header();
        for r in &self.rows {
            out.push_str(&r.line());
        }
        out.push_str(&self.summary());
        out
    }

    /// The table's header line.
    pub fn header() -> String {
        format!(
            "{:<6} {:<4} {:<7} {:>7}  {:<60}  statement\n",
            "id", "var", "result", "ms", "evidence"
        )
    }

    /// The counts and the wall time, after the rows.
    pub fn summary(&self) -> String {
        format!(
            "\n{} passed, {} failed, wall time {:.1} s\n",
            self.passed(),
            self.failed(),
            self.wall_ms as f64 / 1000.0
        )
    }

    /// `{"results":[…], "passed":N, "failed":N, "wall_ms":N}`.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "results": self.rows,
            "passed": self.passed(),
            "failed": self.failed(),
            "wall_ms": self.wall_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, pass: bool) -> Row {
        Row {
            id: id.into(),
            scenario: "S1".into(),
            variant: "a".into(),
            pass,
            ms: Some(812),
            evidence: "x".repeat(80),
            at_ms: 0,
        }
    }

    #[test]
    fn table_and_json_show_every_row_and_the_counts() {
        let report = Report {
            rows: vec![row("S1.3", true), row("R4", false)],
            wall_ms: 1500,
        };
        assert!(!report.ok());
        let table = report.render();
        assert!(table.contains("S1.3") && table.contains("FAIL") && table.contains("…"));
        assert!(table.contains(statement("R4")));
        let j = report.json();
        assert_eq!(j["passed"], 1);
        assert_eq!(j["failed"], 1);
        assert_eq!(j["results"][0]["ms"], 812);
        assert_eq!(j["results"][1]["id"], "R4");
        assert!(report.failures().starts_with("R4 (S1 a)"));
        assert!(!Report::default().ok());
    }
}
