//! Calls: the node as a back-to-back UA between a caller and an agent's phone (docs/protocols.md
//! §4.2–§4.3). SDP passes through unchanged, so media flows directly between the endpoints; the
//! node only keeps the two dialogs and reports T-Events.
//!
//! This file holds the call table and what the other files share. One job per file:
//! `routing.rs` where a number is reached; `inbound.rs` an INVITE from a caller or gateway;
//! `third_party.rs` `RequestMakeCall` (3pcc); `dialog.rs` in-dialog requests from the endpoints;
//! `outbound.rs` the node's own requests and their retransmissions; `release.rs` hang-ups and the
//! end of a call; `audit.rs` the session audit; `report.rs` the T-Events of a call (R6 lives
//! there); `acw.rs` after-call work (R7 lives there); `control.rs` T-Lib call control on a call
//! of this node. The R5 refusal lives in `agent.rs`; the relay of call events and control to and
//! from a DN's owner (R11) in `cluster/relay.rs`.

mod acw;
mod audit;
mod control;
mod dialog;
mod inbound;
mod outbound;
mod release;
mod report;
mod routing;
mod third_party;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use sipcore::builder::status;
use sipcore::response_for;
use sipcore::transport::TransportKind;
use tlib::ConnId;

use crate::call::Call;
use crate::core::NodeCore;

/// Which leg of a call a dialog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Why a call ended, for the journal and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
    Rejected,
    Timeout,
    Released3pcc,
    /// The session audit found a leg gone.
    LegLost,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Released3pcc => "released_by_desktop",
            Outcome::LegLost => "leg_lost",
        }
    }
}

/// The calls that live on this node, by ConnID, with both legs' Call-IDs to find the call of an
/// in-dialog request. A call and its two dialogs come and go together.
#[derive(Debug)]
pub struct CallTable {
    calls: HashMap<ConnId, Call>,
    dialogs: HashMap<String, (ConnId, Side)>,
    /// The node's part of every ConnID it makes: a hash of its name in the top 16 bits, so two
    /// nodes of a cluster never hand out the same ConnID.
    conn_id_base: u64,
    /// Not reset with the table: a restarted node does not hand out a ConnID again.
    next_call: u64,
}

impl CallTable {
    /// The call table of node `node`.
    pub fn new(node: &str) -> Self {
        let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
        });
        CallTable {
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            conn_id_base: (hash & 0xffff) << 48,
            next_call: 0,
        }
    }

    /// A ConnID for a new call.
    pub fn new_conn_id(&mut self) -> ConnId {
        self.next_call += 1;
        ConnId(self.conn_id_base | self.next_call)
    }

    /// Adds a call with both its dialogs.
    pub fn insert(&mut self, call: Call) {
        let conn = call.conn_id;
        self.dialogs.insert(call.a.call_id.clone(), (conn, Side::A));
        self.dialogs.insert(call.b.call_id.clone(), (conn, Side::B));
        self.calls.insert(conn, call);
    }

    /// Removes a call and its dialogs.
    pub fn remove(&mut self, conn: ConnId) -> Option<Call> {
        let call = self.calls.remove(&conn)?;
        self.dialogs.remove(&call.a.call_id);
        self.dialogs.remove(&call.b.call_id);
        Some(call)
    }

    pub fn get(&self, conn: &ConnId) -> Option<&Call> {
        self.calls.get(conn)
    }

    pub fn get_mut(&mut self, conn: &ConnId) -> Option<&mut Call> {
        self.calls.get_mut(conn)
    }

    pub fn contains(&self, conn: &ConnId) -> bool {
        self.calls.contains_key(conn)
    }

    /// The call and leg of an in-dialog request, by its Call-ID.
    pub fn dialog(&self, call_id: &str) -> Option<(ConnId, Side)> {
        self.dialogs.get(call_id).copied()
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    pub fn clear(&mut self) {
        self.calls.clear();
        self.dialogs.clear();
    }
}

impl NodeCore {
    pub(super) fn via(&self, transport: TransportKind, branch: &str) -> String {
        via_line(self.config.sip_addr(), transport, branch)
    }

    pub(super) fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.node, self.config.sip_addr())
    }
}

/// A CallUUID: 32 upper-case alphanumerics, as Genesys prints them.
fn new_call_uuid() -> String {
    sipcore::ids::call_id()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect::<String>()
        .to_uppercase()
}

/// A Via line value for a request the node sends from `addr`.
fn via_line(addr: std::net::SocketAddr, transport: TransportKind, branch: &str) -> String {
    let t = if transport == TransportKind::Tcp {
        "TCP"
    } else {
        "UDP"
    };
    format!("SIP/2.0/{t} {addr};branch={branch};rport")
}

/// A response with a `Warning` header saying why.
fn warned_response(req: &rsip::Request, code: u16, reason: &str) -> rsip::Response {
    let mut resp = response_for(req, status(code));
    sipcore::builder::set_header(
        &mut resp,
        rsip::Header::Warning(format!("399 drlab \"{reason}\"").into()),
    );
    resp
}
