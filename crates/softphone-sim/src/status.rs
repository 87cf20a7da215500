//! What a person or a script sees while a simulator runs: a live status line on stderr (only
//! when stderr is a terminal) and the journal as JSON lines on stdout (`--json`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use nodekit::Journal;
use tokio::time::Instant;

use crate::swarm::{Stats, Swarm};

/// One status line: `12.3s  registered 9876/10000 (812/s)  failovers 0  …`.
pub fn status_line(stats: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{:>6.1}s  registered {}/{} ({:.0}/s)  failovers {}  failures {}  answered {}  established {}  ended {}  media lost {}  silent drops {}",
        elapsed.as_secs_f64(),
        stats.registered,
        stats.phones,
        stats.registrations as f64 / secs,
        stats.failovers,
        stats.registration_failures,
        stats.calls_answered,
        stats.calls_established,
        stats.calls_ended,
        stats.media_lost,
        stats.media_silent_drops,
    )
}

/// Redraws the status line every `every` until the task is dropped; nothing when stderr is
/// not a terminal (a pipe or a log file would fill with carriage returns).
pub async fn live_status(swarm: Swarm, every: Duration) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
    loop {
        tick.tick().await;
        let line = status_line(&swarm.stats(), start.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// Prints every journal entry as one JSON line on stdout, as it is recorded.
pub async fn print_events(journal: Journal) {
    let mut seen = 0;
    loop {
        journal.wait_newer(seen, Duration::from_secs(60)).await;
        let entries = journal.since(seen, 10_000);
        let mut out = std::io::stdout().lock();
        for entry in entries {
            seen = entry.seq;
            if let Ok(line) = serde_json::to_string(&*entry) {
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_shows_progress_and_rate() {
        let stats = Stats {
            phones: 10_000,
            registered: 5_000,
            registrations: 5_000,
            failovers: 2,
            registration_failures: 3,
            unregistrations: 0,
            calls_answered: 1,
            calls_established: 0,
            calls_ended: 1,
            media_lost: 4,
            media_silent_drops: 1,
        };
        let line = status_line(&stats, Duration::from_secs(2));
        assert!(line.contains("registered 5000/10000 (2500/s)"), "{line}");
        assert!(line.contains("failovers 2"), "{line}");
        assert!(line.contains("silent drops 1"), "{line}");
    }
}
