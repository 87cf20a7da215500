//! A call as plain data and pure transitions: [`Answering`] for a call the phone (or the PSTN
//! gateway) receives, [`Placing`] for a call the caller places. Each input returns the SIP
//! actions to take; the engine turns them into messages. Time comes in as `now`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// How a phone answers an INVITE (the 180 always goes out first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// 200 at once.
    Auto,
    /// 200 after the delay.
    Delay(#[serde(with = "nodekit::duration")] Duration),
    /// 200 when the desktop answers: an in-dialog NOTIFY `Event: talk` (docs/protocols.md §4.3).
    Notify,
}

/// `auto`, `delay=MS` or `notify`.
impl FromStr for AnswerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(AnswerMode::Auto),
            "notify" => Ok(AnswerMode::Notify),
            other => match other.strip_prefix("delay=").map(str::parse::<u64>) {
                Some(Ok(ms)) => Ok(AnswerMode::Delay(Duration::from_millis(ms))),
                _ => Err(format!("answer mode `{s}`: use auto, delay=MS or notify")),
            },
        }
    }
}

impl fmt::Display for AnswerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerMode::Auto => f.write_str("auto"),
            AnswerMode::Delay(d) => write!(f, "delay={}", d.as_millis()),
            AnswerMode::Notify => f.write_str("notify"),
        }
    }
}

/// What to do on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    /// 180 Ringing to the INVITE.
    Ring,
    /// 200 OK with our SDP to the INVITE, and start the media heartbeat.
    Answer,
    /// A final error to the INVITE (487 after CANCEL or BYE, 603 when the phone declines).
    Refuse(u16),
    /// Call `on_timer` at this time.
    Wake(Instant),
    /// ACK the final response (and start the heartbeat when it was a 2xx).
    Ack,
    Bye,
    Cancel,
}

/// Why a call ended, in the journal's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The far end sent BYE.
    RemoteBye,
    /// This side hung up (hold time over, or asked to).
    LocalBye,
    /// CANCEL before answer (either side).
    Cancelled,
    /// No media for `media_timeout`: this side sent BYE.
    MediaSilent,
    /// Our 2xx was never acknowledged (RFC 3261 §13.3.1.4): this side sent BYE.
    NoAck,
    /// A final error response (the callee refused, or we declined).
    Refused(u16),
    /// No final response at all (Timer B).
    NoResponse,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::RemoteBye => "remote_bye",
            EndReason::LocalBye => "local_bye",
            EndReason::Cancelled => "cancelled",
            EndReason::MediaSilent => "media_silent",
            EndReason::NoAck => "no_ack",
            EndReason::Refused(_) => "refused",
            EndReason::NoResponse => "no_response",
        }
    }
}

/// Phases of a received call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweringPhase {
    Ringing {
        answer_at: Option<Instant>,
    },
    /// 200 sent, waiting for the ACK.
    Answered,
    Confirmed,
    Ended(EndReason),
}

/// A call the phone receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answering {
    pub phase: AnsweringPhase,
}

impl Answering {
    /// A new INVITE: ring, then answer per `mode`.
    pub fn offered(mode: AnswerMode, now: Instant) -> (Answering, Vec<CallAction>) {
        let (answer_at, mut actions) = match mode {
            AnswerMode::Auto => (None, vec![CallAction::Ring, CallAction::Answer]),
            AnswerMode::Delay(d) => (Some(now + d), vec![CallAction::Ring]),
            AnswerMode::Notify => (None, vec![CallAction::Ring]),
        };
        let phase = match (mode, answer_at) {
            (AnswerMode::Auto, _) => AnsweringPhase::Answered,
            (_, answer_at) => AnsweringPhase::Ringing { answer_at },
        };
        actions.extend(answer_at.map(CallAction::Wake));
        (Answering { phase }, actions)
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, AnsweringPhase::Ended(_))
    }

    /// The answer delay is over.
    pub fn on_timer(&mut self, now: Instant) -> Vec<CallAction> {
        match self.phase {
            AnsweringPhase::Ringing {
                answer_at: Some(at),
            } if now >= at => self.answer(),
            _ => Vec::new(),
        }
    }

    /// An in-dialog NOTIFY; `talk` answers a ringing call (desktop answer, any answer mode).
    /// Returns whether the dialog exists (200) or not (481).
    pub fn on_notify(&mut self, event: &str) -> (bool, Vec<CallAction>) {
        match self.phase {
            AnsweringPhase::Ended(_) => (false, Vec::new()),
            AnsweringPhase::Ringing { .. } if event.eq_ignore_ascii_case("talk") => {
                (true, self.answer())
            }
            _ => (true, Vec::new()),
        }
    }

    pub fn on_ack(&mut self) {
        if self.phase == AnsweringPhase::Answered {
            self.phase = AnsweringPhase::Confirmed;
        }
    }

    /// BYE from the far end; returns whether the dialog existed (200) or not (481).
    pub fn on_bye(&mut self) -> (bool, Vec<CallAction>) {
        match self.phase {
            AnsweringPhase::Ended(_) => (false, Vec::new()),
            // A BYE in the early dialog also ends the INVITE transaction (RFC 3261 §15.1.2).
            AnsweringPhase::Ringing { .. } => {
                self.phase = AnsweringPhase::Ended(EndReason::Cancelled);
                (true, vec![CallAction::Refuse(487)])
            }
            _ => {
                self.phase = AnsweringPhase::Ended(EndReason::RemoteBye);
                (true, Vec::new())
            }
        }
    }

    /// CANCEL: only a ringing call is affected.
    pub fn on_cancel(&mut self) -> Vec<CallAction> {
        match self.phase {
            AnsweringPhase::Ringing { .. } => {
                self.phase = AnsweringPhase::Ended(EndReason::Cancelled);
                vec![CallAction::Refuse(487)]
            }
            _ => Vec::new(),
        }
    }

    /// This phone hangs up: BYE once answered, 603 Decline while ringing.
    pub fn hang_up(&mut self) -> Vec<CallAction> {
        self.end_with(EndReason::LocalBye)
    }

    /// The media heartbeat went silent.
    pub fn on_media_silent(&mut self) -> Vec<CallAction> {
        self.end_with(EndReason::MediaSilent)
    }

    /// The 2xx was retransmitted for 64·T1 without an ACK.
    pub fn on_no_ack(&mut self) -> Vec<CallAction> {
        match self.phase {
            AnsweringPhase::Answered => self.end_with(EndReason::NoAck),
            _ => Vec::new(),
        }
    }

    fn answer(&mut self) -> Vec<CallAction> {
        self.phase = AnsweringPhase::Answered;
        vec![CallAction::Answer]
    }

    fn end_with(&mut self, reason: EndReason) -> Vec<CallAction> {
        match self.phase {
            AnsweringPhase::Ringing { .. } => {
                self.phase = AnsweringPhase::Ended(EndReason::Refused(603));
                vec![CallAction::Refuse(603)]
            }
            AnsweringPhase::Answered | AnsweringPhase::Confirmed => {
                self.phase = AnsweringPhase::Ended(reason);
                vec![CallAction::Bye]
            }
            AnsweringPhase::Ended(_) => Vec::new(),
        }
    }
}

/// Phases of a placed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacingPhase {
    /// INVITE sent; `ringing` once a provisional response came.
    Calling {
        ringing: bool,
    },
    /// CANCEL sent, waiting for the INVITE's final response.
    Cancelling,
    Confirmed {
        hang_up_at: Instant,
    },
    Ended(EndReason),
}

/// A call the caller places: INVITE, hold for `hold` once answered, BYE; CANCEL when nobody
/// answers within `give_up_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placing {
    pub phase: PlacingPhase,
    hold: Duration,
    give_up_at: Instant,
}

impl Placing {
    pub fn new(
        hold: Duration,
        give_up_after: Duration,
        now: Instant,
    ) -> (Placing, Vec<CallAction>) {
        let give_up_at = now + give_up_after;
        let call = Placing {
            phase: PlacingPhase::Calling { ringing: false },
            hold,
            give_up_at,
        };
        (call, vec![CallAction::Wake(give_up_at)])
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, PlacingPhase::Ended(_))
    }

    /// A response to the INVITE (retransmitted 2xx included: each is ACKed again).
    pub fn on_response(&mut self, code: u16, now: Instant) -> Vec<CallAction> {
        match (self.phase, code) {
            (PlacingPhase::Calling { .. }, 101..=199) => {
                self.phase = PlacingPhase::Calling { ringing: true };
                Vec::new()
            }
            (PlacingPhase::Calling { .. } | PlacingPhase::Cancelling, 200..=299) => {
                // Answered (even after our CANCEL crossed it): hold, then hang up.
                let hang_up_at = now + self.hold;
                self.phase = PlacingPhase::Confirmed { hang_up_at };
                vec![CallAction::Ack, CallAction::Wake(hang_up_at)]
            }
            (PlacingPhase::Confirmed { .. }, 200..=299) => vec![CallAction::Ack],
            (PlacingPhase::Calling { .. }, 300..) => {
                self.phase = PlacingPhase::Ended(EndReason::Refused(code));
                vec![CallAction::Ack]
            }
            (PlacingPhase::Cancelling, 300..) => {
                self.phase = PlacingPhase::Ended(EndReason::Cancelled);
                vec![CallAction::Ack]
            }
            _ => Vec::new(),
        }
    }

    /// Hold time over, or nobody answered in time.
    pub fn on_timer(&mut self, now: Instant) -> Vec<CallAction> {
        match self.phase {
            PlacingPhase::Calling { .. } if now >= self.give_up_at => {
                self.phase = PlacingPhase::Cancelling;
                vec![CallAction::Cancel]
            }
            PlacingPhase::Confirmed { hang_up_at } if now >= hang_up_at => {
                self.end_with(EndReason::LocalBye)
            }
            _ => Vec::new(),
        }
    }

    /// BYE from the far end; returns whether the dialog existed.
    pub fn on_bye(&mut self) -> bool {
        match self.phase {
            PlacingPhase::Confirmed { .. } => {
                self.phase = PlacingPhase::Ended(EndReason::RemoteBye);
                true
            }
            _ => false,
        }
    }

    pub fn on_media_silent(&mut self) -> Vec<CallAction> {
        self.end_with(EndReason::MediaSilent)
    }

    /// Hang up now: CANCEL while it rings, BYE once answered.
    pub fn hang_up(&mut self) -> Vec<CallAction> {
        match self.phase {
            PlacingPhase::Calling { .. } => {
                self.phase = PlacingPhase::Cancelling;
                vec![CallAction::Cancel]
            }
            _ => self.end_with(EndReason::LocalBye),
        }
    }

    /// The INVITE got no final response (Timer B).
    pub fn on_no_response(&mut self) {
        if matches!(
            self.phase,
            PlacingPhase::Calling { .. } | PlacingPhase::Cancelling
        ) {
            self.phase = PlacingPhase::Ended(EndReason::NoResponse);
        }
    }

    fn end_with(&mut self, reason: EndReason) -> Vec<CallAction> {
        match self.phase {
            PlacingPhase::Confirmed { .. } => {
                self.phase = PlacingPhase::Ended(reason);
                vec![CallAction::Bye]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallAction::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test(start_paused = true)]
    async fn auto_answer_rings_answers_and_is_confirmed_by_ack() {
        let now = Instant::now();
        let (mut c, actions) = Answering::offered(AnswerMode::Auto, now);
        assert_eq!(actions, vec![Ring, Answer]);
        c.on_ack();
        assert_eq!(c.phase, AnsweringPhase::Confirmed);
        assert_eq!(c.on_bye(), (true, vec![]));
        assert_eq!(c.phase, AnsweringPhase::Ended(EndReason::RemoteBye));
        assert_eq!(c.on_bye(), (false, vec![]), "a second BYE gets 481");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_answer_waits_and_cancel_before_it_refuses_with_487() {
        let now = Instant::now();
        let (mut c, actions) = Answering::offered(AnswerMode::Delay(MS(300)), now);
        assert_eq!(actions, vec![Ring, Wake(now + MS(300))]);
        assert_eq!(c.on_timer(now + MS(299)), vec![]);
        assert_eq!(c.on_timer(now + MS(300)), vec![Answer]);

        let (mut c, _) = Answering::offered(AnswerMode::Delay(MS(300)), now);
        assert_eq!(c.on_cancel(), vec![Refuse(487)]);
        assert_eq!(
            c.on_timer(now + MS(300)),
            vec![],
            "cancelled: no late answer"
        );
        assert_eq!(c.phase, AnsweringPhase::Ended(EndReason::Cancelled));
    }

    #[tokio::test(start_paused = true)]
    async fn notify_talk_answers_and_other_events_do_not() {
        let now = Instant::now();
        let (mut c, actions) = Answering::offered(AnswerMode::Notify, now);
        assert_eq!(actions, vec![Ring]);
        assert_eq!(c.on_notify("hold"), (true, vec![]));
        assert_eq!(c.on_notify("talk"), (true, vec![Answer]));
        assert_eq!(c.on_notify("talk"), (true, vec![]), "already answered");
        assert_eq!(
            c.on_cancel(),
            vec![],
            "CANCEL after the 200 changes nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn media_silence_missing_ack_and_hang_up_end_the_call_with_bye() {
        let now = Instant::now();
        let (mut c, _) = Answering::offered(AnswerMode::Auto, now);
        c.on_ack();
        assert_eq!(c.on_media_silent(), vec![Bye]);
        assert_eq!(c.phase, AnsweringPhase::Ended(EndReason::MediaSilent));
        assert_eq!(c.hang_up(), vec![], "ends once");

        let (mut c, _) = Answering::offered(AnswerMode::Auto, now);
        assert_eq!(c.on_no_ack(), vec![Bye]);
        assert_eq!(c.phase, AnsweringPhase::Ended(EndReason::NoAck));

        let (mut c, _) = Answering::offered(AnswerMode::Notify, now);
        assert_eq!(c.hang_up(), vec![Refuse(603)], "declined while ringing");
        let (mut c, _) = Answering::offered(AnswerMode::Notify, now);
        assert_eq!(
            c.on_bye(),
            (true, vec![Refuse(487)]),
            "BYE in the early dialog"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn placed_call_holds_then_hangs_up() {
        let now = Instant::now();
        let (mut c, actions) = Placing::new(MS(5000), MS(2000), now);
        assert_eq!(actions, vec![Wake(now + MS(2000))]);
        assert_eq!(c.on_response(180, now), vec![]);
        assert_eq!(c.phase, PlacingPhase::Calling { ringing: true });
        let t = now + MS(100);
        assert_eq!(c.on_response(200, t), vec![Ack, Wake(t + MS(5000))]);
        assert_eq!(
            c.on_response(200, t),
            vec![Ack],
            "2xx retransmission ACKed again"
        );
        assert_eq!(c.on_timer(now + MS(2000)), vec![], "answered: no CANCEL");
        assert_eq!(c.on_timer(t + MS(5000)), vec![Bye]);
        assert_eq!(c.phase, PlacingPhase::Ended(EndReason::LocalBye));
        assert!(!c.on_bye());
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_call_is_cancelled_and_refusals_end_it() {
        let now = Instant::now();
        let (mut c, _) = Placing::new(MS(500), MS(2000), now);
        assert_eq!(c.on_timer(now + MS(2000)), vec![Cancel]);
        assert_eq!(c.on_response(487, now + MS(2001)), vec![Ack]);
        assert_eq!(c.phase, PlacingPhase::Ended(EndReason::Cancelled));

        let (mut c, _) = Placing::new(MS(500), MS(2000), now);
        assert_eq!(c.on_response(486, now), vec![Ack]);
        assert_eq!(c.phase, PlacingPhase::Ended(EndReason::Refused(486)));

        let (mut c, _) = Placing::new(MS(500), MS(2000), now);
        c.on_no_response();
        assert_eq!(c.phase, PlacingPhase::Ended(EndReason::NoResponse));

        let (mut c, _) = Placing::new(MS(500), MS(2000), now);
        assert_eq!(c.hang_up(), vec![Cancel]);
        assert_eq!(c.hang_up(), vec![], "already cancelling");

        let (mut c, _) = Placing::new(MS(500), MS(2000), now);
        c.on_response(200, now);
        assert!(c.on_bye());
        assert_eq!(c.phase, PlacingPhase::Ended(EndReason::RemoteBye));
    }

    #[test]
    fn answer_modes_parse_and_print() {
        for text in ["auto", "notify", "delay=250"] {
            assert_eq!(text.parse::<AnswerMode>().unwrap().to_string(), text);
        }
        assert!("later".parse::<AnswerMode>().is_err());
        assert!("delay=x".parse::<AnswerMode>().is_err());
    }
}
