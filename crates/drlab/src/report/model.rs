//! What a report holds, as saved in `journal.json` and `capture.json`, and how captured records
//! become the arrows of the ladder: a message seen leaving one lane and arriving at another is
//! one arrow from its send time to its arrival time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` of a report's `journal.json`; anything else is not ours.
pub const JOURNAL_FORMAT: &str = "drlab-report/1";
/// The `format` of a report's `capture.json`.
pub const CAPTURE_FORMAT: &str = "drlab-capture/1";

/// How far apart (ms) the two sides' records of one message may be.
const MATCH_WINDOW_MS: u64 = 2_000;

/// One lane of the ladder: a node or an actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub name: String,
    /// The DC, or the group of actors (`agents`, `pstn`).
    pub group: String,
    /// `sip`, `gws`, `proxy`, `desktops`, `phone`, `caller`, `gateway`.
    pub kind: String,
    /// Exact sockets (a phone's SIP socket), matched first.
    #[serde(default)]
    pub sockets: Vec<SocketAddr>,
    /// The lane's own addresses, matched when no socket does.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// One checked id, with the moment it was decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub pass: bool,
    /// Milliseconds from the fault to what proved it.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Wall-clock ms of the marker: the proof (fault + ms), else when the check was decided
    /// (the deadline it missed, for a failure).
    pub at_ms: u64,
    pub evidence: String,
    pub statement: String,
}

/// One journal entry of the merged history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub source: String,
    pub at_ms: u64,
    pub kind: String,
    pub detail: Value,
}

/// One scenario variant's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRun {
    pub scenario: String,
    pub variant: String,
    pub started_ms: u64,
    pub ended_ms: u64,
    /// When the fault was injected (the start when the run never got there).
    pub fault_ms: u64,
    pub lanes: Vec<Lane>,
    pub checks: Vec<Check>,
    pub events: Vec<Mark>,
}

impl CaseRun {
    /// `S1-a`, `S0` (no variant): the page's name.
    pub fn slug(&self) -> String {
        slug(&self.scenario, &self.variant)
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }
}

pub fn slug(scenario: &str, variant: &str) -> String {
    if variant == "-" || variant.is_empty() {
        scenario.to_owned()
    } else {
        format!("{scenario}-{variant}")
    }
}

/// `journal.json`: every case of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub format: String,
    pub wall_ms: u64,
    pub cases: Vec<CaseRun>,
}

/// One captured message as `GET /capture?full=true` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    pub at_ms: u64,
    pub link: String,
    /// `in` or `out`, seen from the node.
    pub dir: String,
    pub peer: SocketAddr,
    pub proto: String,
    pub summary: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// One node's capture in one case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeCapture {
    /// The lane it belongs to.
    pub node: String,
    pub records: Vec<Captured>,
    #[serde(default)]
    pub media: Vec<Value>,
}

/// One case's captures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaseCapture {
    pub scenario: String,
    pub variant: String,
    pub nodes: Vec<NodeCapture>,
}

/// `capture.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaptureFile {
    pub format: String,
    pub cases: Vec<CaseCapture>,
}

/// One arrow of the ladder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arrow {
    /// Sent (or first seen) and arrived (the same when only one side saw it).
    pub t0: u64,
    pub t1: u64,
    pub from: String,
    pub to: String,
    pub proto: String,
    pub link: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
}

/// The lane of `peer`: a lane's exact socket, else a lane's address, else `?`.
fn lane_of(lanes: &[Lane], peer: SocketAddr) -> String {
    lanes
        .iter()
        .find(|l| l.sockets.contains(&peer))
        .or_else(|| lanes.iter().find(|l| l.addresses.contains(&peer.ip())))
        .map(|l| l.name.clone())
        .unwrap_or_else(|| "?".into())
}

/// Every message as one arrow: each side's record of it is matched (same lanes and summary,
/// within [`MATCH_WINDOW_MS`]); a message seen by one side only is an arrow of its own.
pub fn arrows(lanes: &[Lane], nodes: &[NodeCapture]) -> Vec<Arrow> {
    let mut out: Vec<Arrow> = Vec::new();
    // Sent messages waiting for their arrival: (from, to, summary) → indexes into `out`.
    let mut unmatched: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
    let mut inbound: Vec<(u64, &str, &Captured)> = Vec::new();
    for node in nodes {
        for r in &node.records {
            if r.dir == "out" {
                let to = lane_of(lanes, r.peer);
                let key = (node.node.clone(), to.clone(), r.summary.clone());
                unmatched.entry(key).or_default().push(out.len());
                out.push(arrow(r, &node.node, &to));
            } else {
                inbound.push((r.at_ms, &node.node, r));
            }
        }
    }
    inbound.sort_by_key(|(at, _, _)| *at);
    for (at, node, r) in inbound {
        let from = lane_of(lanes, r.peer);
        let key = (from.clone(), node.to_owned(), r.summary.clone());
        let sent = unmatched.get_mut(&key).and_then(|sent| {
            let i = sent.iter().position(|&i| {
                let t0 = out[i].t0;
                t0 <= at + 50 && at.saturating_sub(t0) <= MATCH_WINDOW_MS
            })?;
            Some(sent.remove(i))
        });
        match sent {
            Some(i) => out[i].t1 = at.max(out[i].t0),
            None => out.push(arrow(r, &from, node)),
        }
    }
    out.sort_by_key(|a| (a.t0, a.t1));
    out
}

fn arrow(r: &Captured, from: &str, to: &str) -> Arrow {
    Arrow {
        t0: r.at_ms,
        t1: r.at_ms,
        from: from.to_owned(),
        to: to.to_owned(),
        proto: r.proto.clone(),
        link: r.link.clone(),
        summary: r.summary.clone(),
        key: r.key.clone(),
        message: r.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(name: &str, ip: &str, socket: Option<&str>) -> Lane {
        Lane {
            name: name.into(),
            group: "dc1".into(),
            kind: "sip".into(),
            sockets: socket.map(|s| s.parse().unwrap()).into_iter().collect(),
            addresses: vec![ip.parse().unwrap()],
        }
    }

    fn rec(at: u64, dir: &str, peer: &str, summary: &str) -> Captured {
        Captured {
            at_ms: at,
            link: "sip:x".into(),
            dir: dir.into(),
            peer: peer.parse().unwrap(),
            proto: "sip".into(),
            summary: summary.into(),
            key: None,
            message: String::new(),
        }
    }

    #[test]
    fn both_sides_of_a_message_make_one_arrow() {
        let lanes = vec![
            lane("ss1", "127.0.1.1", None),
            lane("caller", "127.0.3.2", Some("127.0.3.2:5060")),
            lane("phone-7002", "127.0.3.2", Some("127.0.3.2:5070")),
        ];
        let nodes = vec![
            NodeCapture {
                node: "caller".into(),
                records: vec![rec(100, "out", "127.0.1.1:5060", "INVITE sip:8001 CSeq 1")],
                media: vec![],
            },
            NodeCapture {
                node: "ss1".into(),
                records: vec![
                    rec(103, "in", "127.0.3.2:5060", "INVITE sip:8001 CSeq 1"),
                    rec(104, "in", "127.0.3.2:5070", "REGISTER sip:ss1 CSeq 2"),
                    rec(105, "out", "127.0.9.9:1", "OPTIONS sip:gw CSeq 3"),
                    // Seen long after anything was sent: not the same message.
                    rec(9000, "in", "127.0.3.2:5060", "INVITE sip:8001 CSeq 1"),
                ],
                media: vec![],
            },
        ];
        let a = arrows(&lanes, &nodes);
        assert_eq!(a.len(), 4, "{a:#?}");
        assert_eq!((a[0].from.as_str(), a[0].to.as_str()), ("caller", "ss1"));
        assert_eq!((a[0].t0, a[0].t1), (100, 103));
        assert_eq!(a[1].from, "phone-7002");
        assert_eq!(a[2].to, "?");
        assert_eq!((a[3].t0, a[3].from.as_str()), (9000, "caller"));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("S0", "-"), "S0");
        assert_eq!(slug("S1", "a"), "S1-a");
    }
}
