//! Partitions of a Compose lab: iptables rules in the `wan` router container, which every
//! packet between two networks crosses. Rules go into the router's own chain
//! ([`FAULT_CHAIN`], jumped to from `FORWARD`), so `heal` is one flush and `rules` one listing.
//! Nodes and their control planes are untouched: this is the network failing, not the process.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};

use super::compose::FAULT_CHAIN;
use super::docker::docker;
use super::plan::Plan;

/// What a cut between two DCs drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutScope {
    /// Every packet between the two DCs' networks.
    All,
    /// Only the TC layer (the SIP nodes' TC ports, both directions): T-Lib, SIP and HTTP between
    /// the DCs keep working.
    TcOnly,
}

/// The iptables arguments (each a full `iptables …` argument list) that cut `dc_a` from `dc_b`.
pub fn cut_rules(
    plan: &Plan,
    dc_a: &str,
    dc_b: &str,
    scope: CutScope,
) -> Result<Vec<Vec<String>>, String> {
    let subnet = |dc: &str| {
        plan.network(dc).map(|n| n.subnet.clone()).ok_or_else(|| {
            let known: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no network `{dc}` in the lab (networks: {})",
                known.join(", ")
            )
        })
    };
    let (a, b) = (subnet(dc_a)?, subnet(dc_b)?);
    if a == b {
        return Err(format!(
            "`{dc_a}` and `{dc_b}` are the same network: nothing to cut"
        ));
    }
    let rule = |src: &str, dst: &str, extra: &[String]| {
        let mut r: Vec<String> = ["-A", FAULT_CHAIN, "-s", src, "-d", dst]
            .iter()
            .map(|s| s.to_string())
            .collect();
        r.extend(extra.iter().cloned());
        r.extend(["-j".to_string(), "DROP".to_string()]);
        r
    };
    let mut rules = Vec::new();
    for (src, dst) in [(&a, &b), (&b, &a)] {
        match scope {
            CutScope::All => rules.push(rule(src, dst, &[])),
            CutScope::TcOnly => {
                for port in tc_ports(plan)? {
                    for side in ["--dport", "--sport"] {
                        let extra = ["-p", "tcp", side, &port.to_string()].map(String::from);
                        rules.push(rule(src, dst, &extra));
                    }
                }
            }
        }
    }
    Ok(rules)
}

fn tc_ports(plan: &Plan) -> Result<BTreeSet<u16>, String> {
    let topology = plan
        .topology
        .as_ref()
        .ok_or_else(|| "the lab's topology is not loaded".to_string())?;
    Ok(topology
        .node_configs(None)?
        .iter()
        .map(|c| c.tc_port)
        .collect())
}

/// Cuts `dc_a` from `dc_b` in the router; returns the rules applied (as `iptables -S` shows them).
pub fn cut(plan: &Plan, dc_a: &str, dc_b: &str, scope: CutScope) -> anyhow::Result<Vec<String>> {
    let rules = cut_rules(plan, dc_a, dc_b, scope).map_err(|e| anyhow!(e))?;
    for rule in &rules {
        let mut args = vec!["exec", plan.router.as_str(), "iptables"];
        args.extend(rule.iter().map(String::as_str));
        docker(&args)?;
    }
    Ok(rules.iter().map(|r| r.join(" ")).collect())
}

/// Removes every partition rule.
pub fn heal(plan: &Plan) -> anyhow::Result<()> {
    docker(&["exec", &plan.router, "iptables", "-F", FAULT_CHAIN])?;
    Ok(())
}

/// The partition rules in force, as `iptables -S` prints them.
pub fn rules(plan: &Plan) -> anyhow::Result<Vec<String>> {
    let text = docker(&["exec", &plan.router, "iptables", "-S", FAULT_CHAIN])?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect())
}

/// `docker kill` (crash) or `docker restart` of a node's container.
pub fn node_action(plan: &Plan, node: &str, action: NodeAction) -> anyhow::Result<()> {
    let Some(c) = plan.container(node) else {
        bail!("no node `{node}` in the lab");
    };
    let verb = match action {
        NodeAction::Kill => "kill",
        NodeAction::Restart => "restart",
    };
    docker(&[verb, &c.container])?;
    Ok(())
}

/// What [`node_action`] does to a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAction {
    Kill,
    Restart,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::plan::PlanRequest;

    fn plan() -> Plan {
        Plan::new(
            &crate::Topology::embedded(),
            PlanRequest {
                project: "lab".into(),
                ..PlanRequest::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_dc_cut_drops_both_directions_in_the_router() {
        let rules = cut_rules(&plan(), "dc1", "dc2", CutScope::All).unwrap();
        let text: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            text,
            [
                "-A DRLAB -s 172.30.1.0/24 -d 172.30.2.0/24 -j DROP",
                "-A DRLAB -s 172.30.2.0/24 -d 172.30.1.0/24 -j DROP"
            ]
        );
    }

    #[test]
    fn a_tc_only_cut_names_the_tc_port_both_ways() {
        let rules = cut_rules(&plan(), "dc1", "dc2", CutScope::TcOnly).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(
            rules[1].join(" "),
            "-A DRLAB -s 172.30.1.0/24 -d 172.30.2.0/24 -p tcp --sport 3100 -j DROP"
        );
        let e = cut_rules(&plan(), "dc1", "dc7", CutScope::All).unwrap_err();
        assert!(e.contains("networks: dc1, dc2, pstn"), "{e}");
    }
}
