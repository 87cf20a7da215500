//! Helpers for the desktop tests: the embedded lab (fast profile) with the sticky proxy in front
//! of its DC1 GWS nodes, which node holds a user's session, and a desktop's journal.

use std::net::SocketAddr;

use desktop_sim::Entry;
use drlab::Lab;
use gws_mock::GwsNode;
use netfault::{FaultMode, FaultRule};
use serde_json::Value;

use crate::cluster::start_lab;
use crate::gws::wait_link_up;

/// The DC1 GWS nodes the proxy balances.
pub const DC1_GWS: [&str; 2] = ["gws1", "gws2"];

/// The lab (fast profile) with both DC1 GWS nodes' T-Lib links up, and the HTTP address of its
/// proxy-dc1 in front of gws1 and gws2 (NGINX Plus `sticky learn` on `JSESSIONID`, R14).
pub async fn lab_behind_proxy() -> (Lab, SocketAddr) {
    lab_behind_proxy_with(|t| t).await
}

/// [`lab_behind_proxy`] with the topology's text edited first (e.g. `[gws_cors]` added).
pub async fn lab_behind_proxy_with(edit: impl FnOnce(String) -> String) -> (Lab, SocketAddr) {
    let lab = start_lab(edit).await;
    for name in DC1_GWS {
        wait_link_up(gws(&lab, name)).await;
    }
    let proxy = lab
        .proxy("proxy-dc1")
        .expect("proxy-dc1 of the embedded topology");
    assert_eq!(proxy.upstreams, DC1_GWS);
    let http = proxy.http;
    (lab, http)
}

pub fn gws<'a>(lab: &'a Lab, name: &str) -> &'a GwsNode {
    lab.gws_node(name)
        .expect("GWS node of the embedded topology")
}

/// Cuts the T-Lib link of the DC1 node that holds `user`'s session (reject: the SIP node's
/// side is reset) and returns that node's name.
pub fn reject_home_tlib<'a>(lab: &'a Lab, user: &str) -> &'a str {
    let home = session_node(lab, user, &[0, 0]).expect("a session for the user on a DC1 node");
    gws(lab, home)
        .faults()
        .add(FaultRule::new("tlib:*", FaultMode::Reject))
        .expect("a valid fault rule");
    home
}

/// The DC1 node whose journal created a session for `user` after `since` (per node: the seq
/// before the event of interest; 0 for any time).
pub fn session_node<'a>(lab: &'a Lab, user: &str, since: &[u64; 2]) -> Option<&'a str> {
    DC1_GWS.iter().zip(since).find_map(|(name, since)| {
        let created = gws(lab, name)
            .journal()
            .since(*since, usize::MAX)
            .iter()
            .any(|e| e.kind == "session.created" && e.detail()["user"] == user);
        created.then_some(*name)
    })
}

/// Each DC1 node's newest journal seq.
pub fn dc1_seqs(lab: &Lab) -> [u64; 2] {
    DC1_GWS.map(|name| gws(lab, name).journal().last_seq())
}

/// `(at_ms, kind, detail)` of every `desktop.*` entry about `user`, oldest first.
pub fn desktop_entries(
    entries: &[std::sync::Arc<Entry>],
    user: &str,
) -> Vec<(u64, &'static str, Value)> {
    entries
        .iter()
        .map(|e| (e.at_ms, e.kind, e.detail()))
        .filter(|(_, _, d)| d["user"] == user)
        .collect()
}

/// The messages shown, with their times.
pub fn messages_shown(entries: &[(u64, &'static str, Value)]) -> Vec<(u64, String)> {
    entries
        .iter()
        .filter(|(_, kind, _)| *kind == "desktop.message_shown")
        .map(|(at, _, d)| (*at, d["message"].as_str().unwrap_or("").to_owned()))
        .collect()
}
