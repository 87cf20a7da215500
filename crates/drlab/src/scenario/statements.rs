//! The statement of every rule and assertion id, in this project's words (docs/scenarios.md
//! has them with the options and the interpretations taken).

/// Every id and its statement, rules first.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("R1", "the node that accepts the controlling registration (SIP REGISTER, or the first T-Lib registration of a PSTN DN) owns the DN"),
    ("R2", "a T-Lib client may register a DN at a non-owner node, which relays to and from the owner"),
    ("R3", "a new client registering the DN at its owner moves nothing"),
    ("R4", "when the client that logged the agent in unregisters or disconnects, the agent is logged out; calls stay"),
    ("R5", "no agent login (or logout) while the DN has a call or ACW"),
    ("R6", "a registration reports the DN's calls in progress, which the client can then control"),
    ("R7", "a released business call puts the agent in ACW; Ready again when wrap-up ends"),
    ("R8", "ownership moves to a node with a controlling registration once the old owner has no registration, call or ACW, after ownership_move_delay, logging the agent out first"),
    ("R9", "while the old client neither unregisters nor disconnects, ownership never moves"),
    ("R10", "a node that loses the TC link to a DN's owner reports the DN out of service and the agent logged out, refuses login; calls continue"),
    ("R11", "a call lives on the node that received its INVITE; events and control cross the TC layer; a release that cannot reach the call clears it locally; on heal it resynchronises"),
    ("R12", "a softphone binding not refreshed expires: the DN goes out of service and loses its owner"),
    ("R13", "a desktop that loses its session shows Reconnecting…, then gives up after giveup_after; an owner-side out of service ends the session, an owner-unreachable one only shows the voice channel unavailable"),
    ("R14", "the proxy keeps a desktop on its bound GWS node and re-binds it to another node of the DC when that one is down (new login)"),
    ("S0.1", "cutting DC1 from DC2 entirely in the standard set-up changes nothing in DC1: calls, logins and desktops carry on"),
    ("S1.1", "both calls continue end to end, with media, for the whole scenario"),
    ("S1.2", "each desktop shows Reconnecting…; one that cannot recover within giveup_after shows Unable to establish connection…"),
    ("S1.3", "the proxy re-binds the desktop to GWS2; the old session is unknown there; the desktop logs in again"),
    ("S1.4", "through GWS2 the registration reports Call1, the agent login is refused (call in progress), the desktop shows Call1 and releases it"),
    ("S1.5", "after Call1 and ACW end, Agent1 logs in"),
    ("S1.6", "ownership of Agent1's DN stays on ss1 throughout"),
    ("S1.7", "Agent2 reconnects through DC2; when GWS1 unregisters the DN or ss1 sees GWS1 disconnect, Agent2 is logged out whatever the call state"),
    ("S1.8", "ss1 keeps Agent2's DN until Call2 and ACW end, then moves it to ss3 after ownership_move_delay; an agent logged in through ss3 meanwhile logs on twice"),
    ("S1.9", "with session expiry disabled on GWS1 (variant b), ownership of Agent2's DN never moves"),
    ("S2.1", "both calls continue"),
    ("S2.2", "ss1 detects the lost GWS1 (at once on reset, within addp.timeout on silence) and logs both agents out; calls stay"),
    ("S2.3", "GWS1 reports the voice channel out of service and the desktops show it"),
    ("S2.4", "the desktops reconnect while the calls go on, see and control them, but cannot log in"),
    ("S2.5", "after the call and ACW end, the agent logs in"),
    ("S2.6", "an agent now on the other DC: ss1 waits ownership_move_delay, logs the agent out, moves the DN; the agent logs in again"),
    ("S3.1", "both calls continue with media"),
    ("S3.2", "Agent1's desktop gets no more events for Call1 and its control has no effect"),
    ("S3.3", "when the caller hangs up Call1 the desktop still shows it; the agent's release clears it"),
    ("S3.4", "when the TC layer heals, call events and control come back"),
    ("S3.5", "ss1 reports Agent2's DN out of service and the agent logged out to GWS1; the desktop shows the voice channel unavailable"),
    ("S3.6", "ss4 logs Agent2 out (its remote client is lost with the link); Call2 continues"),
    ("S3.7", "Agent2 cannot log in through a GWS node of DC1"),
    ("S3.8", "Agent2 logs in through DC2; the desktop shows no call"),
    ("S3.9", "while the TC layer is cut, Agent1 reconnects through DC2 (the node Call1 is on) and gets control of Call1 back"),
    ("S4.1", "Call2 is lost: the softphone drops it when media stops, ss2 releases it and the desktop sees it released"),
    ("S4.2", "paths back before the registration expires: the DN stays in service and the agent is not affected"),
    ("S4.3", "the softphone finds the failure when it refreshes and registers at ss3"),
    ("S4.4", "ss1 logs the agent out and ownership moves to ss3 at once (no call, no ACW)"),
    ("S4.5", "the desktop shows Unable to establish connection…"),
    ("S4.6", "the agent logs in again through either DC"),
];

/// The statement of `id` ("" for an unknown id).
pub fn statement(id: &str) -> &'static str {
    STATEMENTS
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| *s)
        .unwrap_or("")
}
