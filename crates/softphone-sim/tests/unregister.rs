//! Unregistration at shutdown, against a scripted UDP registrar (no node needed): every
//! registered phone sends REGISTER `Expires: 0` in its own Call-ID, and the wait is bounded
//! when the registrar stays silent.

use std::collections::HashMap;
use std::time::Duration;

use sipcore::builder::{self, status};
use sipcore::rsip::SipMessage;
use sipcore::{fields, parse_message, response_for};
use softphone_sim::{PhoneConfig, Swarm, Unregistered};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One REGISTER as the registrar saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    dn: String,
    call_id: String,
    cseq: u32,
    expires: u32,
}

/// Answers every REGISTER with 200 granting what it asks for, except unregistrations when
/// `silent_on_unregister`; reports each REGISTER (retransmissions included).
async fn registrar(
    silent_on_unregister: bool,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(SipMessage::Request(req)) = parse_message(&buf[..n]) else {
                continue;
            };
            let expires = fields::expires_header(&req).unwrap().unwrap();
            let seen = Seen {
                dn: fields::dn_from_to_uri(&req).unwrap(),
                call_id: fields::call_id(&req).unwrap().to_owned(),
                cseq: fields::cseq(&req).unwrap().0,
                expires,
            };
            if tx.send(seen).is_err() {
                break;
            }
            if expires == 0 && silent_on_unregister {
                continue;
            }
            let mut ok = response_for(&req, status(200));
            builder::set_expires(&mut ok, expires);
            let _ = socket.send_to(ok.to_string().as_bytes(), from).await;
        }
    });
    (addr, rx)
}

async fn registered_swarm(registrar: std::net::SocketAddr) -> Swarm {
    let config = PhoneConfig::phones(["7001", "7002", "7003"], [registrar]).with_fast_timers();
    let swarm = Swarm::start(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(
        swarm.until_registered(deadline).await,
        "{:?}",
        swarm.stats()
    );
    swarm
}

#[tokio::test]
async fn unregister_removes_every_binding_with_expires_0_in_its_call_id() {
    let (addr, mut seen) = registrar(false).await;
    let swarm = registered_swarm(addr).await;
    let mut registrations = HashMap::new();
    while registrations.len() < 3 {
        let s = seen.recv().await.unwrap();
        registrations.insert(s.dn.clone(), s);
    }

    let done = swarm.unregister(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        done,
        Unregistered {
            phones: 3,
            confirmed: 3,
            complete: true
        }
    );
    let mut removals = HashMap::new();
    while removals.len() < 3 {
        let s = seen.recv().await.unwrap();
        if s.expires == 0 {
            removals.insert(s.dn.clone(), s);
        }
    }
    for (dn, first) in &registrations {
        let removal = &removals[dn];
        assert_eq!(
            removal.call_id, first.call_id,
            "{dn}: same Call-ID, same binding"
        );
        assert!(removal.cseq > first.cseq, "{dn}: a later CSeq");
    }
    let stats = swarm.stats();
    assert_eq!((stats.registered, stats.unregistrations), (0, 3));
    let events = swarm.journal().since(0, 1000);
    let unregistered: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "phone.unregistered")
        .map(|e| e.detail())
        .collect();
    assert_eq!(unregistered.len(), 3);
    assert!(
        unregistered.iter().all(|d| d["status"] == 200),
        "{unregistered:?}"
    );

    // A second call finds nothing registered and returns at once.
    let again = swarm.unregister(Duration::from_secs(5)).await.unwrap();
    assert_eq!((again.phones, again.complete), (0, true));
}

#[tokio::test]
async fn the_wait_for_a_silent_registrar_is_bounded() {
    let (addr, _seen) = registrar(true).await;
    let swarm = registered_swarm(addr).await;
    let t0 = Instant::now();
    let done = swarm.unregister(Duration::from_millis(200)).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        done,
        Unregistered {
            phones: 3,
            confirmed: 0,
            complete: false
        }
    );
    assert_eq!(swarm.stats().registered, 0);
}
