//! The scenario report (`drlab scenario … --report DIR`, `drlab report --from journal.json DIR`):
//! `index.html` with every case and id, one ladder page per case (lanes per node and actor
//! grouped by DC, the captured messages as arrows, journal events as marks, the fault as a band,
//! every assertion as a marker), and the data beside them, `journal.json` and `capture.json`.
//!
//! * [`model`] — what is saved, and captured records made arrows;
//! * [`collect`] — one case's run collected before its lab stops;
//! * [`html`] — the index and the pages, from the templates in `assets/`.

pub mod collect;
pub mod html;
pub mod model;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

pub use collect::Recorder;
use model::{CaptureFile, CaseCapture, CaseRun, Journal, CAPTURE_FORMAT, JOURNAL_FORMAT};

use crate::orchestra::BadInput;

/// Creates `dir` (if needed) and checks that a report can be written there, before a run.
pub fn prepare(dir: &Path) -> Result<(), BadInput> {
    let unwritable = |e: std::io::Error| {
        BadInput::new(
            format!("cannot write the report to {}: {e}", dir.display()),
            Vec::new(),
        )
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let probe = dir.join(".drlab-report-probe");
    std::fs::write(&probe, b"").map_err(unwritable)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes the report of a run to `dir`; the paths of the pages written.
pub fn write(dir: &Path, journal: &Journal, capture: &CaptureFile) -> anyhow::Result<Vec<PathBuf>> {
    prepare(dir)?;
    let put = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        anyhow::Ok(path)
    };
    put("journal.json", &serde_json::to_vec_pretty(journal)?)?;
    put("capture.json", &serde_json::to_vec(capture)?)?;
    let empty = CaseCapture::default();
    let mut counts = Vec::new();
    let mut pages = Vec::new();
    for case in &journal.cases {
        let captured = capture
            .cases
            .iter()
            .find(|c| c.scenario == case.scenario && c.variant == case.variant)
            .unwrap_or(&empty);
        let arrows = model::arrows(&case.lanes, &captured.nodes);
        let media: Vec<Value> = captured
            .nodes
            .iter()
            .flat_map(|n| {
                n.media.iter().map(move |m| {
                    let mut m = m.clone();
                    if let Some(o) = m.as_object_mut() {
                        o.insert("node".into(), n.node.clone().into());
                    }
                    m
                })
            })
            .collect();
        counts.push((case.slug(), arrows.len()));
        let html = html::page(case, &arrows, &media);
        pages.push(put(&format!("{}.html", case.slug()), html.as_bytes())?);
    }
    let messages = |c: &CaseRun| {
        counts
            .iter()
            .find(|(s, _)| *s == c.slug())
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    pages.insert(
        0,
        put("index.html", html::index(journal, &messages).as_bytes())?,
    );
    Ok(pages)
}

/// Reads a saved run's `journal.json` (and the `capture.json` beside it) and writes its report
/// to `out`; the pages written.
pub fn render_saved(journal_path: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let shown = journal_path.display();
    let text = std::fs::read_to_string(journal_path)
        .map_err(|e| BadInput::new(format!("cannot read {shown}: {e}"), Vec::new()))?;
    let journal: Journal = parse_ours(&text, JOURNAL_FORMAT).map_err(|why| {
        BadInput::new(
            format!("{shown} is not a drlab report journal: {why}"),
            Vec::new(),
        )
    })?;
    let capture_path = journal_path.with_file_name("capture.json");
    let capture = match std::fs::read_to_string(&capture_path) {
        Ok(text) => parse_ours(&text, CAPTURE_FORMAT).map_err(|why| {
            BadInput::new(
                format!("{} is not a drlab capture: {why}", capture_path.display()),
                Vec::new(),
            )
        })?,
        Err(_) => {
            eprintln!(
                "drlab: no {} beside the journal: the pages show no messages",
                capture_path.display()
            );
            CaptureFile {
                format: CAPTURE_FORMAT.into(),
                cases: Vec::new(),
            }
        }
    };
    prepare(out)?;
    write(out, &journal, &capture)
}

/// `text` as one of our files: JSON with `"format": format`, then the whole shape.
fn parse_ours<T: serde::de::DeserializeOwned>(text: &str, format: &str) -> Result<T, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    match value.get("format").and_then(Value::as_str) {
        Some(f) if f == format => {}
        Some(f) => return Err(format!("its format is `{f}`, not `{format}`")),
        None => return Err(format!("no \"format\": \"{format}\"")),
    }
    serde_json::from_value(value).map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_files_are_refused_in_one_line() {
        let dir = std::env::temp_dir().join(format!("drlab-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.json");
        for (text, expected) in [
            ("not json", "not JSON"),
            (r#"{"results":[]}"#, "no \"format\""),
            (r#"{"format":"other/1"}"#, "`other/1`"),
            (r#"{"format":"drlab-report/1"}"#, "missing field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = render_saved(&path, &dir.join("out")).unwrap_err();
            let line = format!("{e:#}");
            assert!(e.downcast_ref::<BadInput>().is_some(), "{line}");
            assert!(line.contains(expected) && !line.contains('\n'), "{line}");
        }
        let missing = render_saved(&dir.join("nope.json"), &dir).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_is_bad_input() {
        let e = prepare(Path::new("/proc/drlab-report")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot write the report to /proc/drlab-report"));
    }
}
