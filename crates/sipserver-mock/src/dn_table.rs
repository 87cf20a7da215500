//! The DN table: what the node knows about each DN beyond its SIP binding (T-Lib registrations,
//! owner, agent, calls, cluster state). Only DNs that carry something are kept, so 100k
//! configured DNs cost nothing until used.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tlib::ConnId;

use crate::agent::{Agent, ClientId};

/// Everything the node knows about one DN beyond its SIP binding.
#[derive(Debug, Default, Serialize)]
pub struct DnState {
    /// Clients that registered the DN (`RequestRegisterAddress`), in registration order.
    pub clients: BTreeSet<ClientId>,
    /// The node that keeps the DN's agent state (R1); None: unowned.
    pub owner: Option<Arc<str>>,
    /// Boxed: most DNs (a phone registered, nobody logged in) carry no agent.
    pub agent: Option<Box<Agent>>,
    /// Calls in progress on this DN (a second call rings the phone too; the phone decides).
    pub calls: Vec<ConnId>,
    /// Bumped on every ACW start, so a stale wrap-up timer does nothing.
    #[serde(skip)]
    pub acw_serial: u64,
    /// The epoch of the latest ownership record known for the DN (see `cluster/mod.rs`).
    pub epoch: u64,
    /// Cluster state most DNs never need.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<crate::cluster::ClusterDn>>,
}

impl DnState {
    fn is_idle(&self) -> bool {
        self.clients.is_empty()
            && self.owner.is_none()
            && self.agent.is_none()
            && self.calls.is_empty()
            && self.cluster.as_ref().is_none_or(|c| c.is_idle())
    }

    /// A call on the DN: here, or on another node while that node can be reached (a call in a
    /// disconnected DC does not keep the agent from logging in elsewhere).
    pub fn call_in_progress(&self) -> bool {
        let remote = self
            .cluster
            .as_ref()
            .is_some_and(|c| c.reachable_remote_calls().next().is_some());
        !self.calls.is_empty() || remote
    }

    /// The cluster part, created on first use.
    pub fn cluster_mut(&mut self) -> &mut crate::cluster::ClusterDn {
        self.cluster.get_or_insert_with(Default::default)
    }
}

/// The DNs the node keeps state for, by name.
#[derive(Debug, Default)]
pub struct DnTable {
    map: HashMap<Box<str>, DnState>,
}

impl DnTable {
    pub fn get(&self, dn: &str) -> Option<&DnState> {
        self.map.get(dn)
    }

    pub fn get_mut(&mut self, dn: &str) -> Option<&mut DnState> {
        self.map.get_mut(dn)
    }

    /// The DN's state, created empty on first use.
    pub fn entry(&mut self, dn: &str) -> &mut DnState {
        self.map.entry(dn.into()).or_default()
    }

    pub fn contains(&self, dn: &str) -> bool {
        self.map.contains_key(dn)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Box<str>, &DnState)> {
        self.map.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Box<str>, &mut DnState)> {
        self.map.iter_mut()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|dn| &**dn)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Drops the DN's state when it carries nothing any more.
    pub fn forget_if_idle(&mut self, dn: &str) {
        if self.map.get(dn).is_some_and(DnState::is_idle) {
            self.map.remove(dn);
        }
    }

    /// A call of this node on the DN begins.
    pub fn add_call(&mut self, dn: &str, conn: ConnId) {
        self.entry(dn).calls.push(conn);
    }

    /// A call of this node on the DN is over.
    pub fn remove_call(&mut self, dn: &str, conn: ConnId) {
        if let Some(state) = self.map.get_mut(dn) {
            state.calls.retain(|c| *c != conn);
        }
    }

    /// Whether `conn` is a call of this node on the DN.
    pub fn has_call(&self, dn: &str, conn: ConnId) -> bool {
        self.map.get(dn).is_some_and(|s| s.calls.contains(&conn))
    }

    /// The calls of this node on the DN.
    pub fn calls_on(&self, dn: &str) -> &[ConnId] {
        self.map.get(dn).map_or(&[], |s| s.calls.as_slice())
    }
}

impl std::ops::Index<&str> for DnTable {
    type Output = DnState;

    /// The state of a DN known to be kept (tests).
    fn index(&self, dn: &str) -> &DnState {
        &self.map[dn]
    }
}
