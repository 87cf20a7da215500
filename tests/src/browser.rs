//! Headless Chromium for the tests that need a real browser (CORS from a page, the scenario
//! report's pages). A missing chromium skips them, unless CI requires it.

use std::process::Output;
use std::time::Duration;

/// Whether headless Chromium can run here. CI sets `DRLAB_REQUIRE_CHROMIUM=1` so a missing
/// browser fails there.
pub fn chromium_available() -> bool {
    nodekit::peer::available(
        nodekit::peer::runs("chromium", &["--version"]),
        "chromium",
        "DRLAB_REQUIRE_CHROMIUM",
        "apt-get install chromium",
    )
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`), in a profile
/// of its own that is removed afterwards, within `limit`.
pub async fn chromium(url: &str, args: &[String], limit: Duration) -> Output {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "drlab-chromium-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(args)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("chromium finished within {limit:?}"))
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    output
}
