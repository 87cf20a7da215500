//! Call user data and DTMF over T-Lib (docs/protocols.md §2.1). `RequestAttachUserData` and
//! `RequestUpdateUserData` add or replace keys of the call's `UserData`, `RequestDeleteUserData`
//! removes it all; each is answered by `EventAttachedDataChanged` with the whole user data, to
//! every client of the DN. `RequestSendDTMF` is answered by `EventDTMFSent`: the node keeps no
//! media, so no tones reach the SIP side.

use tlib::{event, ConnId, KvList, MessageName, Request};
use tokio::time::Instant;

use crate::agent::{ClientId, Refusal};
use crate::core::NodeCore;

impl NodeCore {
    /// Serves one of the requests above (the caller has checked the client registered the DN).
    pub(crate) fn call_data_request(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        request: &Request,
        now: Instant,
    ) -> Result<(), Refusal> {
        let (dn, conn) = match request {
            Request::AttachUserData { dn, conn_id, .. }
            | Request::UpdateUserData { dn, conn_id, .. }
            | Request::DeleteUserData { dn, conn_id }
            | Request::SendDtmf { dn, conn_id, .. } => (dn.as_str(), *conn_id),
            _ => return Ok(()),
        };
        let Some(call) = self
            .calls
            .get(&conn)
            .filter(|_| self.dns.get(dn).is_some_and(|d| d.calls.contains(&conn)))
        else {
            return Err(Refusal::new(
                tlib::error_code::INV_CONNID,
                format!("No call {conn} on DN {dn}"),
            ));
        };
        let mut info = call.info_for(dn, None);
        let msg = match request {
            Request::SendDtmf { digits, .. } => {
                let mut msg = event::call_event(MessageName::EventDTMFSent, None, &info);
                msg.attrs.dtmf_digits = Some(digits.clone());
                msg
            }
            _ => {
                info.user_data = Some(self.change_user_data(conn, request));
                event::call_event(MessageName::EventAttachedDataChanged, None, &info)
            }
        };
        self.publish_call_event(dn, conn, msg, Some((client, reference)), None, now);
        Ok(())
    }

    /// Applies the change and returns the call's user data after it. Entries of calls that are
    /// gone are dropped here, so the store holds no more than the calls in progress.
    fn change_user_data(&mut self, conn: ConnId, request: &Request) -> KvList {
        let calls = &self.calls;
        self.user_data.retain(|c, _| calls.contains(c));
        let data = self.user_data.entry(conn).or_default();
        match request {
            Request::AttachUserData { user_data, .. }
            | Request::UpdateUserData { user_data, .. } => data.extend(user_data.clone()),
            _ => data.clear(),
        }
        data.clone()
    }
}
