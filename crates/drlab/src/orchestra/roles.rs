//! The roles a scenario needs, taken from the topology: the first DC is "DC1", the second "DC2";
//! the first and second SIP nodes of DC1 play ss1 and ss2, those of DC2 ss3 and ss4; the first
//! and second GWS nodes of DC1 play GWS1 and GWS2, the first of DC2 GWS3; each DC's proxy is
//! the one in front of its GWS nodes; Agent1 and Agent2 are the first two PSTN DNs, the
//! softphone agents the first two softphone DNs. A topology that lacks a role is refused with
//! the role's name.

use std::net::IpAddr;

use sipserver_mock::DnKind;

use super::BadInput;
use crate::topology::{DnSpec, Topology};

/// A desktop user of a DN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub dn: String,
    pub user: String,
    pub password: String,
}

/// Every role of the seed's scenarios, by the seed's names.
#[derive(Clone, Debug)]
pub struct Roles {
    pub dc1: String,
    pub dc2: String,
    pub ss1: String,
    pub ss2: String,
    pub ss3: String,
    pub ss4: String,
    pub gws1: String,
    pub gws2: String,
    pub gws3: String,
    pub proxy_dc1: String,
    pub proxy_dc2: String,
    /// Agent1 and Agent2 when they are PSTN agents (S0–S3).
    pub pstn: [Agent; 2],
    /// Agent1 and Agent2 when they are softphone agents (S3's Agent2, S4).
    pub softphone: [Agent; 2],
    /// The address the scenario's phones and callers bind (next to the PSTN gateway's).
    pub actor_ip: IpAddr,
}

fn missing(role: &str, what: &str) -> BadInput {
    BadInput::new(
        format!("the topology lacks role {role} ({what})"),
        vec!["a topology with two DCs, two SIP nodes and a proxy with two GWS nodes in DC1, two SIP nodes and a GWS node in DC2, two PSTN DNs and two softphone DNs".into()],
    )
}

fn agents(topology: &Topology, kind: DnKind, role: &str) -> Result<[Agent; 2], BadInput> {
    let mut found = Vec::new();
    for spec in topology.dns.iter().filter(|d| d.kind == kind) {
        // The seed's agents are the range's first + 1 and + 2 (8001, 8002 of 8000–8999).
        let mut n = 1;
        while found.len() < 2 {
            let Some(dn) = spec.nth_dn(n) else { break };
            found.push(agent(spec, &dn));
            n += 1;
        }
    }
    match <[Agent; 2]>::try_from(found) {
        Ok(a) => Ok(a),
        Err(_) => Err(missing(role, "two DNs of that kind in `dns`")),
    }
}

fn agent(spec: &DnSpec, dn: &str) -> Agent {
    Agent {
        dn: dn.to_owned(),
        user: spec.user_of(dn),
        password: spec.password.clone(),
    }
}

impl Roles {
    pub fn from_topology(t: &Topology) -> Result<Roles, BadInput> {
        let mut dcs: Vec<&str> = Vec::new();
        for n in &t.sip_nodes {
            if !dcs.contains(&n.dc.as_str()) {
                dcs.push(&n.dc);
            }
        }
        let dc1 = dcs.first().ok_or_else(|| missing("DC1", "the first DC"))?;
        let dc2 = dcs.get(1).ok_or_else(|| missing("DC2", "a second DC"))?;
        let sip = |dc: &str, i: usize, role: &str| {
            t.sip_nodes
                .iter()
                .filter(|n| n.dc == dc)
                .nth(i)
                .map(|n| n.name.clone())
                .ok_or_else(|| missing(role, "a SIP node"))
        };
        let gws = |dc: &str, i: usize, role: &str| {
            t.gws_nodes
                .iter()
                .filter(|n| n.dc == dc)
                .nth(i)
                .map(|n| n.name.clone())
                .ok_or_else(|| missing(role, "a GWS node"))
        };
        let gws1 = gws(dc1, 0, "GWS1")?;
        let gws2 = gws(dc1, 1, "GWS2")?;
        let gws3 = gws(dc2, 0, "GWS3")?;
        let proxy = |g: &str, role: &str| {
            t.proxies
                .iter()
                .find(|p| p.gws_nodes.iter().any(|n| n == g))
                .map(|p| p.name.clone())
                .ok_or_else(|| missing(role, "a proxy in front of the DC's GWS nodes"))
        };
        let proxy_dc1 = proxy(&gws1, "proxy-dc1")?;
        if !t
            .proxies
            .iter()
            .any(|p| p.name == proxy_dc1 && p.gws_nodes.contains(&gws2))
        {
            return Err(missing("GWS2", "a second GWS node behind DC1's proxy"));
        }
        let actor_ip = t
            .pstn_gateway
            .map(|g| next_ip(g.ip()))
            .unwrap_or_else(|| IpAddr::from([127, 0, 0, 1]));
        Ok(Roles {
            ss1: sip(dc1, 0, "ss1")?,
            ss2: sip(dc1, 1, "ss2")?,
            ss3: sip(dc2, 0, "ss3")?,
            ss4: sip(dc2, 1, "ss4")?,
            proxy_dc2: proxy(&gws3, "proxy-dc2")?,
            gws1,
            gws2,
            gws3,
            proxy_dc1,
            pstn: agents(t, DnKind::Pstn, "Agent1/Agent2 (PSTN)")?,
            softphone: agents(t, DnKind::Softphone, "Agent1/Agent2 (softphone)")?,
            dc1: dc1.to_string(),
            dc2: dc2.to_string(),
            actor_ip,
        })
    }
}

/// The next IPv4 address (the phones and callers sit beside the PSTN gateway).
fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).wrapping_add(1).into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_TOPOLOGY;

    #[test]
    fn roles_of_the_default_topology_and_of_one_with_other_ranges() {
        let r = Roles::from_topology(&Topology::embedded()).unwrap();
        assert_eq!(
            [&r.ss1, &r.ss2, &r.ss3, &r.ss4],
            ["ss1", "ss2", "ss3", "ss4"]
        );
        assert_eq!([&r.gws1, &r.gws2, &r.gws3], ["gws1", "gws2", "gws3"]);
        assert_eq!([&r.proxy_dc1, &r.proxy_dc2], ["proxy-dc1", "proxy-dc2"]);
        assert_eq!(r.pstn[0].dn, "8001");
        assert_eq!(r.pstn[1].user, "agent8002");
        assert_eq!(r.softphone[1].dn, "7002");
        let other = DEFAULT_TOPOLOGY.replace("8000-8999", "4100-4199").replace(
            "kind = \"pstn\"",
            "kind = \"pstn\"\nuser = \"pstn{dn}\"\npassword = \"s3cret\"",
        );
        let r = Roles::from_topology(&Topology::parse(&other).unwrap()).unwrap();
        assert_eq!(r.pstn[0].user, "pstn4101");
        assert_eq!(r.pstn[0].password, "s3cret");
    }

    #[test]
    fn a_topology_without_a_second_dc_names_the_missing_role() {
        let one_dc = DEFAULT_TOPOLOGY.replace("dc = \"dc2\"", "dc = \"dc1\"");
        let t = Topology::parse(&one_dc).unwrap();
        let e = Roles::from_topology(&t).unwrap_err();
        assert!(e.problem.contains("DC2"), "{e}");
    }
}
