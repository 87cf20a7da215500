//! The report's HTML: the index of every case and one self-contained page per case (the sheet,
//! the script and the case's data inlined, so a page works offline and from `file://`). The
//! templates are files beside this one.

use std::fmt::Write;

use serde_json::json;

use super::model::{Arrow, CaseRun, Journal};

const CSS: &str = include_str!("assets/report.css");
const HEAD: &str = include_str!("assets/head.html");
const PAGE: &str = include_str!("assets/page.html");
const LADDER_JS: &str = include_str!("assets/ladder.js");
const INDEX: &str = include_str!("assets/index.html");

/// Text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `template` with its `<head>`: the document's title and the sheet inlined.
fn with_head(template: &str, title: &str) -> String {
    let head = HEAD
        .replace("{{TITLE}}", &escape(title))
        .replace("{{CSS}}", CSS);
    template.replace("{{HEAD}}", &head)
}

/// JSON that can sit inside a `<script>` element: no `<` (so no `</script>`) outside strings
/// can occur in JSON, and inside strings `\u003c` means the same.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

/// One case's page.
pub fn page(case: &CaseRun, arrows: &[Arrow], media: &[serde_json::Value]) -> String {
    let title = format!(
        "{} {}",
        case.scenario,
        if case.variant == "-" {
            ""
        } else {
            case.variant.as_str()
        }
    );
    let data = json!({ "case": case, "arrows": arrows, "media": media });
    // The data goes in last: nothing in it is taken for a placeholder.
    let title = title.trim();
    with_head(PAGE, &format!("{title} — drlab scenario report"))
        .replace("{{JS}}", LADDER_JS)
        .replace("{{TITLE}}", &escape(title))
        .replace("{{DATA}}", &script_json(&data))
}

/// The index: every case with its result and page, then every id.
pub fn index(journal: &Journal, messages: &dyn Fn(&CaseRun) -> usize) -> String {
    let mut cases = String::new();
    let mut ids = String::new();
    let (mut passed, mut failed) = (0, 0);
    for case in &journal.cases {
        let ok = case.checks.iter().filter(|c| c.pass).count();
        let verdict = if case.passed() { "pass" } else { "fail" };
        let slug = case.slug();
        let _ = writeln!(
            cases,
            "<tr><td>{}</td><td>{}</td><td class=\"{verdict}\">{}</td><td class=\"num\">{ok}/{}</td>\
             <td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td><a href=\"{}.html\">{}</a></td></tr>",
            escape(&case.scenario),
            escape(&case.variant),
            if case.passed() { "pass" } else { "FAIL" },
            case.checks.len(),
            case.ended_ms.saturating_sub(case.started_ms) as f64 / 1000.0,
            messages(case),
            escape(&slug),
            escape(&slug),
        );
        for c in &case.checks {
            if c.pass {
                passed += 1;
            } else {
                failed += 1;
            }
            let _ = writeln!(
                ids,
                "<tr><td><a href=\"{}.html\">{}</a></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&slug),
                escape(&c.id),
                escape(&case.scenario),
                escape(&case.variant),
                if c.pass { "pass" } else { "fail" },
                if c.pass { "pass" } else { "FAIL" },
                c.ms.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                escape(&c.evidence),
                escape(&c.statement),
            );
        }
    }
    let summary = format!(
        "{} cases · {passed} ids passed, {failed} failed · wall time {:.1} s",
        journal.cases.len(),
        journal.wall_ms as f64 / 1000.0
    );
    with_head(INDEX, "drlab scenario report")
        .replace("{{SUMMARY}}", &escape(&summary))
        .replace("{{CASES}}", &cases)
        .replace("{{IDS}}", &ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script() {
        let v = json!({ "m": "</script><script>alert(1)</script>" });
        let s = script_json(&v);
        assert!(!s.contains("</script"), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
