//! Helpers for the end-to-end tests: start nodes on free ports, connect T-Lib clients, speak
//! SIP from a bare UDP/TCP socket, run SIPp.

pub mod browser;
pub mod cluster;
pub mod desktop;
pub mod gws;
pub mod ua;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use netfault::Faults;
use sipserver_mock::{NodeConfig, SipNode};
use tlib::{AddpConfig, ClientEvent, Events, Message, MessageName, TlibClient};
use tokio::net::UdpSocket;

/// The embedded default topology moved to 127.0.`net`.x (DC1), 127.0.`net+1`.x (DC2) and
/// 127.0.`net+2`.x (the PSTN gateway, phones and callers), so that a test's whole lab meets no
/// other test's lab or iptables rule.
pub fn moved_topology(net: u8) -> drlab::Topology {
    let text = drlab::DEFAULT_TOPOLOGY
        .replace("127.0.1.", &format!("127.0.{net}."))
        .replace("127.0.2.", &format!("127.0.{}.", net + 1))
        .replace("127.0.3.", &format!("127.0.{}.", net + 2));
    drlab::Topology::parse(&text).expect("the moved topology parses")
}

/// How long any single expected event may take in the fast profile before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A node on 127.0.0.1 with free ports and the fast timer profile; `tune` adjusts the config.
pub async fn start_node(name: &str, tune: impl FnOnce(&mut NodeConfig)) -> SipNode {
    let mut config = NodeConfig::new(name, "dc1", "127.0.0.1".parse().unwrap())
        .with_ephemeral_ports()
        .with_fast_timers();
    tune(&mut config);
    sipserver_mock::start(config).await.expect("node starts")
}

/// A connected T-Lib client whose socket runs through `faults` on link `link`.
pub async fn tlib_client(node: &SipNode, faults: &Faults, link: &str) -> (TlibClient, Events) {
    let stream = netfault::tcp::connect(faults, link, None, node.tlib_addr())
        .await
        .expect("T-Lib connect");
    TlibClient::handshake(stream, "drlab-test", AddpConfig::from_millis(200, 600))
        .await
        .expect("T-Lib handshake")
}

/// `RequestAgentLogin` for agent `agent<DN>`, Ready at once (`AutoIn`).
pub fn agent_login(dn: &str) -> tlib::Request {
    tlib::Request::AgentLogin {
        dn: dn.into(),
        agent_id: Some(format!("agent{dn}")),
        password: None,
        work_mode: tlib::AgentWorkMode::AutoIn,
        queue: None,
        reasons: None,
        extensions: None,
    }
}

/// Waits for the next event called `name` (responses included).
pub async fn expect_event(events: &mut Events, name: MessageName) -> Message {
    match events.wait_for(|m| m.name == name, PATIENCE).await {
        Ok(m) => m,
        other => panic!("no {} within {PATIENCE:?}: {other:?}", name.as_str()),
    }
}

/// Sends a request and returns its response event, failing the test on a link error.
pub async fn request(client: &TlibClient, req: tlib::Request) -> Message {
    client
        .request(req.to_message(None))
        .await
        .expect("T-Lib request answered")
}

/// Whether the next events include a disconnect.
pub async fn expect_disconnect(events: &mut Events) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Disconnected { .. })) | Ok(None) => return,
            Ok(Some(_)) => continue,
            Err(_) => panic!("client still connected after {PATIENCE:?}"),
        }
    }
}

/// A bare SIP phone on UDP.
pub struct UdpPhone {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl UdpPhone {
    pub async fn new(server: SocketAddr) -> Self {
        UdpPhone {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends raw bytes and returns the first reply's text.
    pub async fn exchange(&self, raw: &[u8]) -> String {
        self.socket.send_to(raw, self.server).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(PATIENCE, self.socket.recv_from(&mut buf))
            .await
            .expect("SIP reply in time")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// REGISTER `dn` with `expires` seconds; returns the reply text.
    pub async fn register(&self, dn: &str, expires: u32) -> String {
        let aor = format!("sip:{dn}@{}", self.server.ip());
        let req = sipcore::RequestBuilder::register(
            &format!("sip:{}", self.server),
            &aor,
            self.local(),
            expires,
        )
        .build()
        .unwrap();
        self.exchange(req.to_string().as_bytes()).await
    }
}

/// The status code of a SIP response text.
pub fn status_of(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The SIPp scenario files shipped with the tests.
pub fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp")
}

/// Whether SIPp is installed. CI sets `DRLAB_REQUIRE_SIPP=1` so a missing SIPp fails there.
pub fn sipp_available() -> bool {
    // `sipp -v` exits non-zero; that it starts at all is the test.
    let found = std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_ok();
    nodekit::peer::available(
        found,
        "SIPp",
        "DRLAB_REQUIRE_SIPP",
        "apt-get install sip-tester",
    )
}
