//! A topology placed on Docker networks: one network per DC plus `pstn` for the PSTN gateway,
//! an address for every node from its network's subnet, and `wan`, the router container that is
//! on every network and carries all traffic between them — the path a partition cuts.
//!
//! Addresses: a node whose topology address is in its DC's subnet keeps it; a loopback address
//! (the in-process lab's) is replaced by the next free one from `.10` up; any other address is
//! an error. `.1` is Docker's gateway (the host), the last address is the router.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::subnet::Subnet;
use crate::topology::Topology;

/// The router container between the networks.
pub const ROUTER: &str = "wan";
/// The network (and DC name) of the PSTN gateway.
pub const PSTN_NETWORK: &str = "pstn";
/// The PSTN gateway's service name.
pub const PSTN_GATEWAY: &str = "pstn-gateway";
/// Where the topology is mounted inside every container.
pub const TOPOLOGY_IN_CONTAINER: &str = "/lab/topology.toml";
/// The first host number handed out on a network.
const FIRST_HOST: u32 = 10;

/// What a container runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SipNode,
    GwsNode,
    Proxy,
    PstnGateway,
}

/// One lab network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNetwork {
    /// The DC's name (or `pstn`): the Compose network key.
    pub name: String,
    /// The Docker network's name: `<project>-<name>`.
    pub docker_name: String,
    /// The subnet, e.g. `172.30.1.0/24`.
    pub subnet: String,
    /// The router's address on it: every container's default route.
    pub router: Ipv4Addr,
}

/// One node container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeContainer {
    /// The node's name: the Compose service.
    pub service: String,
    /// `<project>-<service>`: what `docker exec` takes.
    pub container: String,
    pub role: Role,
    /// The network (DC) it is on.
    pub network: String,
    pub address: Ipv4Addr,
    /// Its control plane (None for the PSTN gateway, which has none).
    pub control: Option<SocketAddr>,
}

/// The lab as containers: what `drlab compose` writes and the fault functions read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub project: String,
    pub image: String,
    /// Timer profile every node runs (None: the topology's `[timers]`).
    pub profile: Option<String>,
    /// The bearer token of every control plane (they listen on container addresses).
    pub control_token: String,
    pub networks: Vec<LabNetwork>,
    pub containers: Vec<NodeContainer>,
    /// The router container's name.
    pub router: String,
    /// The topology with the containers' addresses.
    #[serde(skip)]
    pub topology: Option<Topology>,
}

/// How to place a topology.
#[derive(Clone, Debug, Default)]
pub struct PlanRequest {
    pub project: String,
    pub image: String,
    pub profile: Option<String>,
    /// Subnets by DC name (or `pstn`); the others get [`Subnet::default_for`].
    pub subnets: BTreeMap<String, Subnet>,
    /// The control token; None: a fresh random one.
    pub control_token: Option<String>,
}

/// Parses `--subnet dc1=172.30.1.0/24`.
pub fn parse_subnet_arg(arg: &str) -> Result<(String, Subnet), String> {
    let (name, subnet) = arg
        .split_once('=')
        .ok_or_else(|| format!("--subnet `{arg}`: write it as dc1=172.30.1.0/24"))?;
    Ok((
        name.to_string(),
        subnet
            .parse()
            .map_err(|e| format!("--subnet {name}: {e}"))?,
    ))
}

/// A Compose project name from a directory name, as Compose normalizes it.
pub fn project_name(dir_name: &str) -> String {
    let name: String = dir_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if name.is_empty() {
        "drlab".into()
    } else {
        name
    }
}

/// One node of the topology before placement.
struct Wanted<'a> {
    service: &'a str,
    role: Role,
    dc: &'a str,
    address: IpAddr,
}

impl Plan {
    /// Places `topology` on networks; errors say which node or subnet and what to do.
    pub fn new(topology: &Topology, request: PlanRequest) -> Result<Plan, String> {
        let mut wanted: Vec<Wanted> = Vec::new();
        wanted.extend(topology.sip_nodes.iter().map(|n| Wanted {
            service: &n.name,
            role: Role::SipNode,
            dc: &n.dc,
            address: n.address,
        }));
        wanted.extend(topology.gws_nodes.iter().map(|n| Wanted {
            service: &n.name,
            role: Role::GwsNode,
            dc: &n.dc,
            address: n.address,
        }));
        wanted.extend(topology.proxies.iter().map(|n| Wanted {
            service: &n.name,
            role: Role::Proxy,
            dc: &n.dc,
            address: n.address,
        }));
        if let Some(gw) = topology.pstn_gateway {
            wanted.push(Wanted {
                service: PSTN_GATEWAY,
                role: Role::PstnGateway,
                dc: PSTN_NETWORK,
                address: gw.ip(),
            });
        }
        for w in &wanted {
            let ok = !w.service.is_empty()
                && w.service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !ok
                || w.service == ROUTER
                || (w.service == PSTN_GATEWAY && w.role != Role::PstnGateway)
            {
                return Err(format!(
                    "node name `{}` cannot be a container name: use letters, digits, `-`, `_`, `.` (and not `{ROUTER}` or `{PSTN_GATEWAY}`)",
                    w.service
                ));
            }
            if w.dc == PSTN_NETWORK && w.role != Role::PstnGateway {
                return Err(format!(
                    "node `{}`: the DC name `{PSTN_NETWORK}` is the PSTN gateway's network; rename the DC",
                    w.service
                ));
            }
        }

        // Networks: DCs in order of first appearance, then pstn; subnets given or defaulted.
        let mut names: Vec<&str> = Vec::new();
        for w in &wanted {
            if w.role != Role::PstnGateway && !names.contains(&w.dc) {
                names.push(w.dc);
            }
        }
        if topology.pstn_gateway.is_some() {
            names.push(PSTN_NETWORK);
        }
        for given in request.subnets.keys() {
            if !names.contains(&given.as_str()) {
                return Err(format!(
                    "--subnet {given}: the topology has no DC `{given}` (networks: {})",
                    names.join(", ")
                ));
            }
        }
        let mut networks: Vec<(String, Subnet)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let subnet = match request.subnets.get(*name) {
                Some(s) => *s,
                None if *name == PSTN_NETWORK => Subnet::default_for(0),
                None => {
                    let n = u8::try_from(i + 1)
                        .map_err(|_| "more than 255 DCs: give each a --subnet".to_string())?;
                    Subnet::default_for(n)
                }
            };
            if let Some((other, _)) = networks.iter().find(|(_, s)| s.overlaps(&subnet)) {
                return Err(format!(
                    "--subnet {name}={subnet} overlaps the subnet of {other}: give each network its own range"
                ));
            }
            networks.push((name.to_string(), subnet));
        }
        let subnet_of = |name: &str| networks.iter().find(|(n, _)| n == name).map(|(_, s)| *s);

        // Addresses: keep those already in the subnet, then hand out the rest.
        let mut used: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for (name, subnet) in &networks {
            used.entry(name)
                .or_default()
                .extend([subnet.gateway(), subnet.last_host()]);
        }
        let mut placed: Vec<Option<Ipv4Addr>> = vec![None; wanted.len()];
        for (i, w) in wanted.iter().enumerate() {
            let Some(subnet) = subnet_of(w.dc) else {
                continue;
            };
            match w.address {
                IpAddr::V4(ip) if ip.is_loopback() => {}
                IpAddr::V4(ip) if subnet.contains(ip) => {
                    let taken = used.entry(w.dc).or_default();
                    if !taken.insert(ip) {
                        return Err(format!(
                            "node `{}`: address {ip} is taken on {} ({} is Docker's gateway, {} the router): pick another or use a loopback address to have one assigned",
                            w.service,
                            w.dc,
                            subnet.gateway(),
                            subnet.last_host()
                        ));
                    }
                    placed[i] = Some(ip);
                }
                other => {
                    return Err(format!(
                        "node `{}`: address {other} is outside {}'s subnet {subnet}: pass --subnet {}=<a subnet holding it>, or give the node a loopback address to have one assigned",
                        w.service, w.dc, w.dc
                    ));
                }
            }
        }
        for (i, w) in wanted.iter().enumerate() {
            if placed[i].is_some() {
                continue;
            }
            let subnet = subnet_of(w.dc).ok_or_else(|| format!("no network for {}", w.dc))?;
            let taken = used.entry(w.dc).or_default();
            let ip = (FIRST_HOST..)
                .map_while(|n| subnet.host(n))
                .find(|ip| !taken.contains(ip))
                .ok_or_else(|| {
                    format!(
                        "{}'s subnet {subnet} has no address left for `{}`: pass a wider --subnet {}=…",
                        w.dc, w.service, w.dc
                    )
                })?;
            taken.insert(ip);
            placed[i] = Some(ip);
        }

        // The topology the containers run: their addresses, control planes behind a token.
        let token = request.control_token.clone().unwrap_or_else(fresh_token);
        let address_of = |service: &str| {
            wanted
                .iter()
                .zip(&placed)
                .find(|(w, _)| w.service == service)
                .and_then(|(_, ip)| *ip)
                .map(IpAddr::V4)
        };
        let mut rewritten = topology.clone();
        for n in &mut rewritten.sip_nodes {
            n.address = address_of(&n.name).unwrap_or(n.address);
            n.control_token.get_or_insert_with(|| token.clone());
        }
        for n in &mut rewritten.gws_nodes {
            n.address = address_of(&n.name).unwrap_or(n.address);
            n.control_token.get_or_insert_with(|| token.clone());
        }
        for n in &mut rewritten.proxies {
            n.address = address_of(&n.name).unwrap_or(n.address);
            n.control_token.get_or_insert_with(|| token.clone());
        }
        if let (Some(gw), Some(ip)) = (rewritten.pstn_gateway, address_of(PSTN_GATEWAY)) {
            rewritten.pstn_gateway = Some(SocketAddr::new(ip, gw.port()));
        }
        let controls = control_planes(&rewritten)?;

        let project = request.project.clone();
        let containers = wanted
            .iter()
            .zip(&placed)
            .map(|(w, ip)| NodeContainer {
                service: w.service.to_string(),
                container: format!("{project}-{}", w.service),
                role: w.role,
                network: w.dc.to_string(),
                address: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                control: controls.get(w.service).copied(),
            })
            .collect();
        Ok(Plan {
            networks: networks
                .iter()
                .map(|(name, subnet)| LabNetwork {
                    name: name.clone(),
                    docker_name: format!("{project}-{name}"),
                    subnet: subnet.to_string(),
                    router: subnet.last_host(),
                })
                .collect(),
            containers,
            router: format!("{project}-{ROUTER}"),
            project,
            image: request.image,
            profile: request.profile,
            control_token: token,
            topology: Some(rewritten),
        })
    }

    /// The network a DC's nodes are on.
    pub fn network(&self, name: &str) -> Option<&LabNetwork> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// A container by its node's name.
    pub fn container(&self, service: &str) -> Option<&NodeContainer> {
        self.containers.iter().find(|c| c.service == service)
    }
}

/// Every node's control plane, by name, as the node configs derive it.
fn control_planes(topology: &Topology) -> Result<BTreeMap<String, SocketAddr>, String> {
    let sip = topology.node_configs(None)?;
    let gws = topology.gws_configs(None, &sip)?;
    let proxies = topology.proxy_configs(None, &gws)?;
    let mut out = BTreeMap::new();
    out.extend(sip.iter().map(|c| (c.name.clone(), c.control_addr())));
    out.extend(gws.iter().map(|c| (c.name.clone(), c.control_addr())));
    out.extend(
        proxies
            .iter()
            .filter_map(|c| c.control.map(|a| (c.name.clone(), a))),
    );
    Ok(out)
}

fn fresh_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(edit: impl FnOnce(&mut PlanRequest)) -> Result<Plan, String> {
        let mut request = PlanRequest {
            project: "lab".into(),
            image: "drlab:latest".into(),
            control_token: Some("t0k".into()),
            ..PlanRequest::default()
        };
        edit(&mut request);
        Plan::new(&Topology::embedded(), request)
    }

    #[test]
    fn the_default_topology_gets_a_network_per_dc_and_addresses_from_dot_10() {
        let p = plan(|_| {}).unwrap();
        let nets: Vec<(&str, &str)> = p
            .networks
            .iter()
            .map(|n| (n.name.as_str(), n.subnet.as_str()))
            .collect();
        assert_eq!(
            nets,
            [
                ("dc1", "172.30.1.0/24"),
                ("dc2", "172.30.2.0/24"),
                ("pstn", "172.30.0.0/24")
            ]
        );
        assert_eq!(
            p.network("dc1").unwrap().router,
            Ipv4Addr::new(172, 30, 1, 254)
        );
        let ss1 = p.container("ss1").unwrap();
        assert_eq!(
            (ss1.address, ss1.container.as_str()),
            (Ipv4Addr::new(172, 30, 1, 10), "lab-ss1")
        );
        assert_eq!(ss1.control, Some("172.30.1.10:9000".parse().unwrap()));
        assert_eq!(
            p.container("ss3").unwrap().address,
            Ipv4Addr::new(172, 30, 2, 10)
        );
        assert_eq!(
            p.container("proxy-dc2").unwrap().address,
            Ipv4Addr::new(172, 30, 2, 14)
        );
        let gw = p.container(PSTN_GATEWAY).unwrap();
        assert_eq!(
            (gw.address, gw.control),
            (Ipv4Addr::new(172, 30, 0, 10), None)
        );
        let t = p.topology.as_ref().unwrap();
        assert_eq!(t.pstn_gateway, Some("172.30.0.10:5060".parse().unwrap()));
        assert_eq!(t.gws_nodes[0].control_token.as_deref(), Some("t0k"));
        // The rewritten topology is a valid topology file.
        Topology::parse(&toml::to_string(t).unwrap()).unwrap();
    }

    #[test]
    fn given_subnets_and_in_subnet_addresses_are_kept() {
        let mut topology = Topology::embedded();
        topology.sip_nodes[0].address = "10.9.0.50".parse().unwrap();
        let request = PlanRequest {
            project: "lab".into(),
            subnets: [("dc1".to_string(), "10.9.0.0/24".parse().unwrap())].into(),
            ..PlanRequest::default()
        };
        let p = Plan::new(&topology, request).unwrap();
        assert_eq!(
            p.container("ss1").unwrap().address,
            Ipv4Addr::new(10, 9, 0, 50)
        );
        assert_eq!(
            p.container("ss2").unwrap().address,
            Ipv4Addr::new(10, 9, 0, 10)
        );
        assert_eq!(p.control_token.len(), 32);
    }

    #[test]
    fn bad_placements_say_what_to_do() {
        let mut topology = Topology::embedded();
        topology.sip_nodes[0].address = "10.9.0.50".parse().unwrap();
        let e = Plan::new(&topology, PlanRequest::default()).unwrap_err();
        assert!(
            e.contains("outside dc1's subnet 172.30.1.0/24") && e.contains("--subnet dc1="),
            "{e}"
        );
        let e = plan(|r| {
            r.subnets.insert("dc9".into(), Subnet::default_for(9));
        })
        .unwrap_err();
        assert!(e.contains("no DC `dc9`"), "{e}");
        let e = plan(|r| {
            r.subnets
                .insert("dc2".into(), "172.30.0.0/16".parse().unwrap());
        })
        .unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        let e = plan(|r| {
            r.subnets
                .insert("dc1".into(), "172.30.1.0/28".parse().unwrap());
        })
        .unwrap_err();
        assert!(e.contains("no address left"), "{e}");
        assert!(parse_subnet_arg("dc1:10.0.0.0/24")
            .unwrap_err()
            .contains("dc1=172.30.1.0/24"));
        assert_eq!(project_name(".tmpAB.c"), "tmpabc");
    }
}
