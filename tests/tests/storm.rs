//! `drlab storm` end to end on a small swarm (fast profile, its own loopback addresses): the
//! fault reaches exactly the agents it should, every one of them recovers, and the report says
//! so in its JSON shape.

use std::time::Duration;

use drlab::orchestra::faults::Via;
use drlab::storm::{self, Options, StormFault};
use drlab::Topology;

/// The default topology on 127.0.82.x (DC1), .83 (DC2) and .84 (gateway and swarms).
fn topology() -> Topology {
    drlab_tests::moved_topology(82)
}

#[tokio::test]
async fn ss1_crash_storm_every_reached_agent_recovers() {
    let opts = Options {
        topology: topology(),
        profile: "fast".into(),
        phones: 40,
        desktops: 20,
        fault: StormFault::Ss1Crash,
        via: Via::Builtin,
        timeout: Duration::from_secs(30),
    };
    let report = storm::run(&opts, |_| {}).await.expect("the storm runs");
    let render = report.render();
    // Half the phones registered with ss1 first: they, and no other, had to move.
    assert_eq!(report.phones.affected, 20, "{render}");
    assert_eq!(report.phones.recovered, 20, "{render}");
    // Every desktop's GWS node lost its SIP node: each went off Ready and came back.
    assert_eq!(report.desktops.affected, 20, "{render}");
    assert!(report.ok(), "{render}");
    assert!(report.phones.from_fault.max_ms > 0, "{render}");
    let json = report.json();
    for kind in ["phones", "desktops"] {
        for key in ["total", "recovered", "lost", "p50_ms", "p99_ms", "max_ms"] {
            assert!(json[kind][key].is_u64(), "{kind}.{key} in {json}");
        }
    }
    assert!(json["never_recovered"]
        .as_array()
        .is_some_and(|n| n.is_empty()));
}

#[tokio::test]
async fn more_desktops_than_phones_is_refused_naming_both() {
    let opts = Options {
        topology: topology(),
        profile: "fast".into(),
        phones: 2,
        desktops: 3,
        fault: StormFault::Gws1Crash,
        via: Via::Builtin,
        timeout: Duration::from_secs(5),
    };
    let e = storm::run(&opts, |_| {}).await.expect_err("refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("--desktops 3") && text.contains("--phones 2"),
        "{text}"
    );
}

/// DC1 goes down entirely: every phone moves to DC2 by its registrar list, every desktop to
/// DC2's proxy by its fallback URL, and each agent is Ready again there.
#[tokio::test]
async fn dc1_down_storm_phones_and_desktops_recover_in_dc2() {
    let opts = Options {
        topology: drlab_tests::moved_topology(85),
        profile: "fast".into(),
        phones: 20,
        desktops: 10,
        fault: StormFault::Dc1Down,
        via: Via::Builtin,
        timeout: Duration::from_secs(30),
    };
    let report = storm::run(&opts, |_| {}).await.expect("the storm runs");
    let render = report.render();
    assert_eq!(report.phones.affected, 20, "{render}");
    assert_eq!(report.desktops.affected, 10, "{render}");
    assert!(report.ok(), "{render}");
}
