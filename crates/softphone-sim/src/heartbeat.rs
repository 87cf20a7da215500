//! The RTP-like media heartbeat as plain data: the packet and the loss bookkeeping.
//!
//! Each packet is a 12-byte RTP header (version 2, PCMU payload type, sequence number,
//! timestamp, SSRC) and a short payload, so packet captures and RTP-aware tools read it as RTP.
//! The receiver counts gaps in the sequence numbers (lost packets) and duplicates or late ones.

/// RTP header plus 20 bytes of silence (PCMU 0xff).
pub const PACKET_LEN: usize = 32;
const RTP_VERSION: u8 = 2 << 6;
const PCMU: u8 = 0;

/// One heartbeat packet.
pub fn packet(seq: u16, timestamp: u32, ssrc: u32) -> [u8; PACKET_LEN] {
    let mut p = [0xffu8; PACKET_LEN];
    p[0] = RTP_VERSION;
    p[1] = PCMU;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&timestamp.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// The sequence number of an RTP packet, `None` for anything that is not RTP version 2.
pub fn sequence(datagram: &[u8]) -> Option<u16> {
    if datagram.len() < 12 || datagram[0] >> 6 != 2 {
        return None;
    }
    Some(u16::from_be_bytes([datagram[2], datagram[3]]))
}

/// Receive-side statistics of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LossTracker {
    /// Packets received (late and duplicate ones included).
    pub received: u64,
    /// Sequence numbers skipped over (packets that never came in order).
    pub lost: u64,
    /// Packets whose sequence number was not ahead of the highest seen.
    pub out_of_order: u64,
    #[serde(skip)]
    highest: Option<u16>,
}

/// A jump larger than this is a new stream (the sender restarted), not a loss burst.
const MAX_GAP: u16 = 3000;

impl LossTracker {
    /// Accounts one packet; returns how many packets it shows were lost (0 when in order).
    pub fn on_packet(&mut self, seq: u16) -> u64 {
        self.received += 1;
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return 0;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 || ahead > u16::MAX / 2 {
            self.out_of_order += 1;
            return 0;
        }
        self.highest = Some(seq);
        if ahead > MAX_GAP {
            return 0;
        }
        let gap = u64::from(ahead - 1);
        self.lost += gap;
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_round_trip() {
        let p = packet(513, 160, 0xdead_beef);
        assert_eq!(sequence(&p), Some(513));
        assert_eq!(p.len(), PACKET_LEN);
        assert_eq!(sequence(&p[..11]), None);
        assert_eq!(sequence(b"SIP/2.0 200 OK\r\n"), None);
    }

    #[test]
    fn gaps_count_as_loss_and_wrap_around_is_seamless() {
        let mut t = LossTracker::default();
        for seq in [65533u16, 65534, 65535, 0, 1] {
            assert_eq!(t.on_packet(seq), 0);
        }
        assert_eq!(t.on_packet(5), 3, "2, 3 and 4 lost");
        assert_eq!(t.on_packet(3), 0, "late");
        assert_eq!(t.on_packet(5), 0, "duplicate");
        assert_eq!((t.received, t.lost, t.out_of_order), (8, 3, 2));
        assert_eq!(
            t.on_packet(20000),
            0,
            "a restarted sender is not a burst of loss"
        );
        assert_eq!(t.lost, 3);
    }
}
