//! `drlab status`: what every node of a running lab reports on its control plane — up or not,
//! TC links up/down, DN owners, logged-in agents, calls; GWS T-Lib links and sessions.

use std::fmt::Write;

use serde_json::{json, Value};

use super::handle::LabHandle;

/// Every node's `/state` (or the error reaching it), in lab order.
pub async fn collect(lab: &LabHandle) -> Value {
    let mut nodes = Vec::new();
    for e in &lab.endpoints {
        let state = match lab.state(e).await {
            Ok(s) => s,
            Err(err) => json!({ "running": false, "error": format!("{err:#}") }),
        };
        nodes.push(json!({ "name": e.name, "kind": e.kind, "dc": e.dc, "state": state }));
    }
    json!({ "nodes": nodes })
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The status as a table.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    for n in list(&status["nodes"]) {
        let s = &n["state"];
        let name = n["name"].as_str().unwrap_or("?");
        let dc = n["dc"].as_str().unwrap_or("");
        let up = if s["running"] == false { "DOWN" } else { "up" };
        let kind = n["kind"].as_str().unwrap_or("");
        let detail = match kind {
            _ if s["running"] == false => s["error"].as_str().unwrap_or("not running").to_owned(),
            "sip" => {
                let links = list(&s["links"]);
                let down: Vec<&str> = links
                    .iter()
                    .filter(|l| l["up"] == false)
                    .filter_map(|l| l["peer"].as_str())
                    .collect();
                let dns = list(&s["dns"]);
                let owned: Vec<&str> = dns
                    .iter()
                    .filter(|d| d["owner"].as_str() == Some(name))
                    .filter_map(|d| d["dn"].as_str())
                    .collect();
                let agents = dns.iter().filter(|d| !d["agent"].is_null()).count();
                format!(
                    "links {}/{} up{} · owns {} DN(s){} · {} agent(s) logged in · {} call(s)",
                    links.len() - down.len(),
                    links.len(),
                    if down.is_empty() {
                        String::new()
                    } else {
                        format!(" (down: {})", down.join(", "))
                    },
                    owned.len(),
                    if owned.is_empty() || owned.len() > 8 {
                        String::new()
                    } else {
                        format!(" ({})", owned.join(", "))
                    },
                    agents,
                    list(&s["calls"]).len()
                )
            }
            "gws" => format!(
                "T-Lib {} · {} session(s)",
                s["tlib_link"]
                    .as_str()
                    .map(|n| format!("→ {n}"))
                    .unwrap_or_else(|| "down".into()),
                list(&s["sessions"]).len()
            ),
            _ => s["error"].as_str().unwrap_or("").to_owned(),
        };
        let _ = writeln!(out, "{name:<10} {dc:<5} {kind:<6} {up:<5} {detail}");
    }
    out
}
