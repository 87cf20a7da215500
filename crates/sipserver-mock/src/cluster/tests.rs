//! Two node cores joined by in-memory TC links, driven without sockets on the paused clock.

use std::sync::Arc;
use std::time::Duration;

use nodekit::Journal;
use tlib::{MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::precedence;
use crate::config::NodeConfig;
use crate::core::tests::{ask, client, names};
use crate::core::NodeCore;
use crate::metrics::NodeMetrics;
use crate::tc::TcMessage;

fn core(name: &str) -> NodeCore {
    let config = NodeConfig::new(name, "dc", "127.0.0.1".parse().unwrap()).with_fast_timers();
    NodeCore::new(
        Arc::new(config),
        Journal::new(name, 10_000),
        Arc::new(NodeMetrics::new(name)),
    )
    .unwrap()
}

/// Two cores and the frames each queued for the other.
struct Pair {
    a: NodeCore,
    b: NodeCore,
    to_b: Option<mpsc::Receiver<TcMessage>>,
    to_a: Option<mpsc::Receiver<TcMessage>>,
    link: u64,
}

impl Pair {
    fn new(a: &str, b: &str) -> Pair {
        Pair {
            a: core(a),
            b: core(b),
            to_b: None,
            to_a: None,
            link: 0,
        }
    }

    fn connect(&mut self) {
        self.link += 1;
        let (ta, ra) = mpsc::channel(100_000);
        let (tb, rb) = mpsc::channel(100_000);
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        self.a.tc_link_up(&bn, self.link, ta);
        self.b.tc_link_up(&an, self.link, tb);
        self.to_b = Some(ra);
        self.to_a = Some(rb);
        self.pump();
    }

    fn cut(&mut self) {
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        self.a.tc_link_down(&bn, self.link, "cut");
        self.b.tc_link_down(&an, self.link, "cut");
        self.to_a = None;
        self.to_b = None;
    }

    /// Delivers queued frames both ways until none are left.
    fn pump(&mut self) {
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        loop {
            let mut moved = false;
            while let Some(m) = self.to_b.as_mut().and_then(|r| r.try_recv().ok()) {
                self.b.on_tc_frame_of(&an, self.link, m, Instant::now());
                moved = true;
            }
            while let Some(m) = self.to_a.as_mut().and_then(|r| r.try_recv().ok()) {
                self.a.on_tc_frame_of(&bn, self.link, m, Instant::now());
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

fn owner(core: &NodeCore, dn: &str) -> Option<String> {
    core.owner_of(dn).map(|o| o.to_string())
}

fn journal_kinds(core: &NodeCore, kind: &str) -> Vec<serde_json::Value> {
    core.journal
        .since(0, usize::MAX)
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail())
        .collect()
}

#[test]
fn records_rank_by_epoch_then_claim_then_lower_name() {
    assert!(precedence(2, Some("ss4")) > precedence(1, Some("ss1")));
    assert!(
        precedence(2, Some("ss4")) > precedence(2, None),
        "a claim beats a release"
    );
    assert!(
        precedence(2, Some("ss1")) > precedence(2, Some("ss4")),
        "lower name wins"
    );
    assert!(precedence(3, None) > precedence(2, Some("ss1")));
}

#[tokio::test(start_paused = true)]
async fn claims_replicate_and_remote_registration_relays_answers() {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let mut owner_client = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8001"));
    p.pump();
    assert_eq!(owner(&p.b, "8001").as_deref(), Some("ss1"), "R1 replicated");
    assert!(names(&mut owner_client).contains(&MessageName::EventRegistered));

    // R2: a client at ss3 registers the DN; ss3 forwards, ss1 answers, ss3 relays.
    let mut remote = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8001"));
    p.pump();
    assert!(names(&mut remote).contains(&MessageName::EventRegistered));
    assert_eq!(owner(&p.a, "8001").as_deref(), Some("ss1"));
    assert_eq!(journal_kinds(&p.a, "ownership.move_requested").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn split_brain_resolves_to_the_same_owner_on_both_sides() {
    let mut p = Pair::new("ss1", "ss4");
    // Never linked: both take the PSTN DN at epoch 1.
    let _a = client(&mut p.a, 1);
    let mut b_client = client(&mut p.b, 1);
    ask(&mut p.a, 1, Request::register_address("8002"));
    ask(&mut p.b, 1, Request::register_address("8002"));
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    assert_eq!(owner(&p.b, "8002").as_deref(), Some("ss4"));
    names(&mut b_client);

    p.connect();
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    assert_eq!(
        owner(&p.b, "8002").as_deref(),
        Some("ss1"),
        "equal epochs: the lower name wins"
    );
    let lost = journal_kinds(&p.b, "ownership.conflict");
    assert_eq!(lost[0]["won"], false);
    let won = journal_kinds(&p.a, "ownership.conflict");
    assert_eq!(won[0]["won"], true);
    // The loser's client hears the DN left it, then gets it back through the winner (R2).
    let seen = names(&mut b_client);
    assert!(seen.contains(&MessageName::EventDNOutOfService), "{seen:?}");
    assert!(
        seen.contains(&MessageName::EventDNBackInService),
        "{seen:?}"
    );
}

/// ss1 owns 8003 with a local client; a client at ss3 registered it too; the local one leaves.
fn move_pending() -> Pair {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let _a = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8003"));
    let _b = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8003"));
    p.pump();
    ask(
        &mut p.a,
        1,
        Request::UnregisterAddress { dn: "8003".into() },
    );
    let scheduled = journal_kinds(&p.a, "ownership.move_scheduled");
    assert_eq!(scheduled[0]["delay_ms"], 1000);
    assert_eq!(scheduled[0]["to"], "ss3");
    p
}

#[tokio::test(start_paused = true)]
async fn move_waits_the_full_delay() {
    let mut p = move_pending();
    tokio::time::advance(Duration::from_millis(999)).await;
    p.a.on_timer(Instant::now());
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss1"));
    tokio::time::advance(Duration::from_millis(1)).await;
    p.a.on_timer(Instant::now());
    p.pump();
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss3"));
}

#[tokio::test(start_paused = true)]
async fn a_cut_link_cancels_the_move_and_the_asker_takes_the_dn_after_heal() {
    let mut p = move_pending();
    tokio::time::advance(Duration::from_millis(500)).await;
    p.a.on_timer(Instant::now());
    p.cut();
    // The remote registration went with the link: the move is off and nothing registers the DN
    // at ss1 any more, so ss1 lets it go; ss3 reports it out of service (R10).
    assert_eq!(journal_kinds(&p.a, "ownership.move_cancelled").len(), 1);
    assert_eq!(owner(&p.a, "8003"), None);
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss1"));
    assert_eq!(journal_kinds(&p.b, "dn.owner_unreachable").len(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    p.a.on_timer(Instant::now());
    assert!(journal_kinds(&p.a, "ownership.moved").is_empty());

    // Healed: ss1's snapshot no longer names the DN; ss3 has the only registration and takes it.
    p.connect();
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss3"));
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_dn_is_claimed_past_its_release() {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let _a = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8004"));
    ask(
        &mut p.a,
        1,
        Request::UnregisterAddress { dn: "8004".into() },
    );
    p.pump();
    // Released (epoch 2) and idle: ss1 keeps nothing about the DN.
    assert!(!p.a.dns.contains_key("8004"));
    ask(&mut p.a, 1, Request::register_address("8004"));
    p.pump();
    assert_eq!(p.a.dns["8004"].epoch, 3);
    assert_eq!(owner(&p.b, "8004").as_deref(), Some("ss1"));
}
