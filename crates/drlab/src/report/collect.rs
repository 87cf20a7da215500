//! Collects one case's run for the report before its lab stops: the lanes (nodes and actors,
//! grouped by DC), the merged history plus the proxies' journals, and every capture — the nodes'
//! through their control planes (`GET /capture`), the in-process actors' from their fault layer.

use std::sync::{Arc, Mutex};

use netfault::Faults;
use serde_json::Value;

use super::model::{
    CaptureFile, Captured, CaseCapture, CaseRun, Check, Journal, Lane, Mark, NodeCapture,
    CAPTURE_FORMAT, JOURNAL_FORMAT,
};
use crate::orchestra::control::expect_ok;
use crate::orchestra::handle::{Endpoint, NodeKind};
use crate::orchestra::history::now_ms;
use crate::scenario::statements::statement;
use crate::scenario::{Report, Stage};

/// Records asked per `GET /capture` (full messages: a page stays well under the client's limit).
const CAPTURE_PAGE: usize = 2_000;
/// Most records read from one node.
const MAX_NODE_RECORDS: usize = 200_000;

/// Where the cases of a run are collected while it goes; cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<(CaseRun, CaseCapture)>>>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    /// Collects `stage`'s run (call it before the stage stops).
    pub async fn collect(&self, stage: &Stage) {
        let (run, capture) = collect(stage).await;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((run, capture));
    }

    /// The run's journal and capture, each case with the report's rows as its checks (a case
    /// whose lab never started has its rows and nothing else).
    pub fn finish(&self, report: &Report) -> (Journal, CaptureFile) {
        let collected = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut cases: Vec<CaseRun> = Vec::new();
        let mut captures = Vec::new();
        for (run, capture) in collected {
            cases.push(run);
            captures.push(capture);
        }
        for row in &report.rows {
            let index = match cases
                .iter()
                .position(|c| c.scenario == row.scenario && c.variant == row.variant)
            {
                Some(i) => i,
                None => {
                    cases.push(CaseRun {
                        scenario: row.scenario.clone(),
                        variant: row.variant.clone(),
                        started_ms: row.at_ms,
                        ended_ms: row.at_ms,
                        fault_ms: row.at_ms,
                        lanes: Vec::new(),
                        checks: Vec::new(),
                        events: Vec::new(),
                    });
                    cases.len() - 1
                }
            };
            let case = &mut cases[index];
            case.checks.push(Check {
                id: row.id.clone(),
                pass: row.pass,
                ms: row.ms,
                at_ms: row.ms.map(|ms| case.fault_ms + ms).unwrap_or(row.at_ms),
                evidence: row.evidence.clone(),
                statement: statement(&row.id).to_owned(),
            });
        }
        (
            Journal {
                format: JOURNAL_FORMAT.into(),
                wall_ms: report.wall_ms,
                cases,
            },
            CaptureFile {
                format: CAPTURE_FORMAT.into(),
                cases: captures,
            },
        )
    }
}

/// A node lane from the lab handle.
fn node_lane(e: &Endpoint) -> Lane {
    let kind = match e.kind {
        NodeKind::Sip => "sip",
        NodeKind::Gws => "gws",
        NodeKind::Proxy => "proxy",
        NodeKind::Phone => "phone",
    };
    Lane {
        name: e.name.clone(),
        group: e.dc.clone(),
        kind: kind.into(),
        sockets: Vec::new(),
        addresses: vec![e.address],
    }
}

fn actor_lane(name: &str, group: &str, kind: &str, sockets: Vec<std::net::SocketAddr>) -> Lane {
    Lane {
        name: name.into(),
        group: group.into(),
        kind: kind.into(),
        addresses: sockets.iter().map(|s| s.ip()).collect(),
        sockets,
    }
}

/// The lanes in ladder order: desktops, DC1 from its proxy in to its SIP nodes, the other DCs
/// from their SIP nodes out to their proxies, then phones, the PSTN gateway and the caller.
fn lanes(stage: &Stage) -> Vec<Lane> {
    let mut lanes = vec![actor_lane("desktops", "agents", "desktops", Vec::new())];
    let order = [NodeKind::Proxy, NodeKind::Gws, NodeKind::Sip];
    for (i, dc) in stage.handle.dcs().iter().enumerate() {
        let mut kinds = order.to_vec();
        if i > 0 {
            kinds.reverse();
        }
        for kind in kinds {
            lanes.extend(
                stage
                    .handle
                    .endpoints
                    .iter()
                    .filter(|e| e.kind == kind && &e.dc == dc)
                    .map(node_lane),
            );
        }
    }
    for phone in &stage.actors.phones {
        let name = phone_lane(stage, phone.sip_addr());
        lanes.push(actor_lane(&name, "agents", "phone", vec![phone.sip_addr()]));
    }
    if let Some(g) = &stage.lab.pstn_gateway {
        lanes.push(actor_lane(
            "pstn-gateway",
            "pstn",
            "gateway",
            vec![g.sip_addr()],
        ));
    }
    let mut caller = actor_lane(
        "caller",
        "pstn",
        "caller",
        vec![stage.actors.caller.sip_addr()],
    );
    caller.addresses = vec![stage.roles.actor_ip];
    lanes.push(caller);
    lanes
}

/// `phone-<dn>` (the phone's journal's name) for the phone at `sip`.
fn phone_lane(stage: &Stage, sip: std::net::SocketAddr) -> String {
    stage
        .handle
        .endpoints
        .iter()
        .find(|e| e.kind == NodeKind::Phone && e.sip == Some(sip.port()) && e.address == sip.ip())
        .map(|e| format!("phone-{}", e.name))
        .unwrap_or_else(|| format!("phone-{sip}"))
}

async fn collect(stage: &Stage) -> (CaseRun, CaseCapture) {
    let lanes = lanes(stage);
    let mut events: Vec<Mark> = stage
        .history
        .since(&stage.history.mark_start())
        .into_iter()
        .map(|e| Mark {
            source: e.source,
            at_ms: e.at_ms,
            kind: e.kind.to_owned(),
            detail: e.detail,
        })
        .collect();
    let mut nodes = Vec::new();
    for e in &stage.handle.endpoints {
        match e.kind {
            NodeKind::Phone => continue,
            NodeKind::Proxy => events.extend(proxy_events(e).await),
            NodeKind::Sip | NodeKind::Gws => {}
        }
        nodes.push(NodeCapture {
            node: e.name.clone(),
            ..node_capture(e).await
        });
    }
    events.sort_by_key(|e| e.at_ms);
    for phone in &stage.actors.phones {
        nodes.push(local_capture(
            &phone_lane(stage, phone.sip_addr()),
            phone.faults(),
        ));
    }
    if let Some(g) = &stage.lab.pstn_gateway {
        nodes.push(local_capture("pstn-gateway", g.faults()));
    }
    nodes.push(local_capture("caller", stage.actors.caller.faults()));
    let first_capture = nodes
        .iter()
        .filter_map(|n| n.records.first().map(|r| r.at_ms))
        .min();
    let started_ms = events
        .first()
        .map(|e| e.at_ms)
        .into_iter()
        .chain(first_capture)
        .min()
        .unwrap_or(stage.fault_at);
    let run = CaseRun {
        scenario: stage.case.scenario.name().into(),
        variant: stage.case.variant.into(),
        started_ms,
        ended_ms: now_ms(),
        fault_ms: stage.fault_at,
        lanes,
        checks: Vec::new(),
        events,
    };
    let capture = CaseCapture {
        scenario: run.scenario.clone(),
        variant: run.variant.clone(),
        nodes,
    };
    (run, capture)
}

/// A proxy's journal (the history holds the SIP and GWS nodes' and the actors').
async fn proxy_events(e: &Endpoint) -> Vec<Mark> {
    let Ok(answer) = expect_ok(&e.name, e.control, "GET", "/events?since=0", None).await else {
        return Vec::new();
    };
    answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ev| {
            Some(Mark {
                source: e.name.clone(),
                at_ms: ev["at_ms"].as_u64()?,
                kind: ev["kind"].as_str()?.to_owned(),
                detail: ev["detail"].clone(),
            })
        })
        .collect()
}

/// A node's capture through its control plane, page by page.
async fn node_capture(e: &Endpoint) -> NodeCapture {
    let mut capture = NodeCapture::default();
    let mut since = 0u64;
    while capture.records.len() < MAX_NODE_RECORDS {
        let path = format!("/capture?since={since}&limit={CAPTURE_PAGE}&full=true");
        let Ok(answer) = expect_ok(&e.name, e.control, "GET", &path, None).await else {
            break;
        };
        let records = parse_records(&answer["records"]);
        capture.media = answer["media"].as_array().cloned().unwrap_or_default();
        let last = answer["records"]
            .as_array()
            .and_then(|r| r.last())
            .and_then(|r| r["seq"].as_u64());
        let got = records.len();
        capture.records.extend(records);
        match last {
            Some(seq) if got == CAPTURE_PAGE => since = seq,
            _ => break,
        }
    }
    capture
}

/// An in-process actor's capture.
fn local_capture(node: &str, faults: &Faults) -> NodeCapture {
    let capture = faults.capture();
    let (records, _) = capture.since(0, MAX_NODE_RECORDS);
    let records = serde_json::to_value(&records).unwrap_or(Value::Null);
    NodeCapture {
        node: node.into(),
        records: parse_records(&records),
        media: serde_json::to_value(capture.media())
            .ok()
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default(),
    }
}

fn parse_records(records: &Value) -> Vec<Captured> {
    records
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_value(r.clone()).ok())
        .collect()
}
