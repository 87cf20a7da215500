//! The lab as containers, end to end on a real Docker daemon: `drlab image build` from this
//! target dir, `drlab compose` for the default topology, Compose `up`, every control plane
//! healthy, the SIP Cluster's TC mesh formed, DC1–DC2 cut by an iptables rule in the `wan`
//! router container (the TC links across go down, R10's trigger) and healed (they come back).
//! Without a daemon it prints `SKIPPED: no Docker daemon` unless `DRLAB_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drlab::containers::compose::write_checked;
use drlab::containers::docker::{daemon_available, docker, ComposeTool};
use drlab::containers::image::ImageBuild;
use drlab::containers::partition::{cut, heal, rules, CutScope};
use drlab::containers::plan::{NodeContainer, Plan, PlanRequest, Role, ROUTER};
use drlab::Topology;
use drlab_tests::cluster::up_link_peers;
use serde_json::Value;

/// How long the containers get to answer on their control planes, and the cluster to form.
const PATIENCE: Duration = Duration::from_secs(60);

/// `docker compose down` when the test ends, passed or failed.
struct Down {
    tool: ComposeTool,
    dir: PathBuf,
    project: String,
}

impl Drop for Down {
    fn drop(&mut self) {
        let args = ["down", "-v", "--remove-orphans", "--timeout", "1"];
        if let Err(e) = self.tool.run(&self.dir, &self.project, &args) {
            eprintln!("containers test: cleaning up failed: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cargo target dir this test was built in (target/debug): the test runs from its `deps/`.
/// `cargo test` builds only the binaries of packages with integration tests, so the image's
/// binaries are built here first (quick when they are fresh; the build lock is free while
/// tests run).
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        // With the tests, so features resolve as in `cargo test` and no dependency rebuilds.
        .args(["build", "--workspace", "--bins", "--tests"])
        .current_dir(workspace)
        .status()
        .expect("cargo runs");
    assert!(
        built.success(),
        "cargo build --workspace --bins --tests failed"
    );
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf()
}

struct Control {
    http: reqwest::Client,
    token: String,
}

impl Control {
    async fn get(&self, addr: SocketAddr, path: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{path}: HTTP {}", resp.status()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Waits until `addr`'s `/state` answers (the container's healthcheck, seen from the host).
    async fn wait_healthy(&self, name: &str, addr: SocketAddr) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.get(addr, "/state").await {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{name}'s control plane {addr} did not answer /state within {PATIENCE:?}: {e}"
                ),
            }
            // Connection refused comes back at once: retry at a modest pace.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The peers a SIP node's `/state` shows with their TC link up.
    async fn up_links(&self, addr: SocketAddr) -> Result<(Vec<String>, u64), String> {
        let events = self.get(addr, "/events?since=0&limit=1").await?;
        let seq = events["last_seq"].as_u64().unwrap_or(0);
        let state = self.get(addr, "/state").await?;
        Ok((up_link_peers(&state), seq))
    }

    /// Waits until `name`'s up TC links are exactly `want`, waking on its journal (`/events`
    /// long-poll), failing after [`PATIENCE`] with `rule`.
    async fn wait_links(&self, rule: &str, name: &str, addr: SocketAddr, want: &[String]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (up, seq) = self.up_links(addr).await.unwrap_or_default();
            if up == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{rule}: {name}'s TC links up {up:?}, expected {want:?} within {PATIENCE:?}"
            );
            let _ = self
                .get(addr, &format!("/events?since={seq}&wait_ms=1000"))
                .await;
        }
    }
}

/// `docker stack config` (Swarm's loader, no swarm needed) takes the generated file and keeps
/// every node and network in it; a client without the command says so and the check is skipped.
fn swarm_reads(plan: &Plan, dir: &Path) {
    let file = dir.join(drlab::containers::compose::COMPOSE_FILE);
    let file = file.to_string_lossy();
    let out = match docker(&["stack", "config", "-c", &file]) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("containers test: Swarm check skipped, `docker stack config` failed: {e:#}");
            return;
        }
    };
    let names = plan
        .containers
        .iter()
        .map(|c| c.service.as_str())
        .chain([ROUTER])
        .chain(plan.networks.iter().map(|n| n.docker_name.as_str()));
    for name in names {
        assert!(
            out.contains(&format!("{name}:")) || out.contains(&format!("name: {name}")),
            "docker stack config dropped `{name}`:\n{out}"
        );
    }
}

/// Which TC links every SIP node should have up.
#[derive(Clone, Copy, PartialEq)]
enum Mesh {
    /// To every other SIP node.
    Full,
    /// Only to the SIP nodes of its own DC.
    SameDc,
}

impl Control {
    /// Waits until every SIP node of `sip` has exactly the links `mesh` says up.
    async fn wait_mesh(&self, sip: &[&NodeContainer], rule: &str, mesh: Mesh) {
        for me in sip {
            let mut want: Vec<String> = sip
                .iter()
                .filter(|c| c.service != me.service)
                .filter(|c| mesh == Mesh::Full || c.network == me.network)
                .map(|c| c.service.clone())
                .collect();
            want.sort();
            let addr = me.control.expect("SIP nodes have a control plane");
            self.wait_links(rule, &me.service, addr, &want).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_lab_forms_the_cluster_and_an_iptables_cut_in_wan_takes_tc_links_down() {
    if !nodekit::peer::available(
        daemon_available(),
        "a Docker daemon",
        "DRLAB_REQUIRE_DOCKER",
        "install Docker Engine and start it",
    ) {
        return;
    }
    let tag = "drlab:test";
    let started = Instant::now();
    let build = ImageBuild::new(Some(target_dir()), Some(tag.into())).expect("image build set-up");
    let built = build
        .run(|step| eprintln!("containers test: {step}"))
        .unwrap_or_else(|e| panic!("drlab image build: {e:#}"));
    eprintln!(
        "containers test: base {} ({}), image {} in {:.1} s",
        built.base_tag,
        built.base_took.map_or("cached".to_string(), |d| format!(
            "built in {:.1} s",
            d.as_secs_f64()
        )),
        built.tag,
        built.image_took.as_secs_f64()
    );

    let project = format!("drlab-ct-{}", std::process::id());
    let subnets: BTreeMap<String, _> = [
        ("dc1", "172.30.201.0/24"),
        ("dc2", "172.30.202.0/24"),
        ("pstn", "172.30.200.0/24"),
    ]
    .into_iter()
    .map(|(dc, s)| (dc.to_string(), s.parse().expect("a valid subnet")))
    .collect();
    let plan = Plan::new(
        &Topology::embedded(),
        PlanRequest {
            project: project.clone(),
            image: tag.into(),
            profile: Some("fast".into()),
            subnets,
            control_token: None,
        },
    )
    .expect("the default topology places");
    let dir = std::env::temp_dir().join(&project);
    write_checked(&plan, &dir).unwrap_or_else(|e| panic!("drlab compose: {e:#}"));
    swarm_reads(&plan, &dir);
    let tool = ComposeTool::detect().expect("Compose is installed");
    let _down = Down {
        tool,
        dir: dir.clone(),
        project: project.clone(),
    };
    tool.run(&dir, &project, &["up", "-d"])
        .unwrap_or_else(|e| panic!("compose up: {e:#}"));

    let control = Control {
        http: reqwest::Client::new(),
        token: plan.control_token.clone(),
    };
    for c in &plan.containers {
        if let Some(addr) = c.control {
            control.wait_healthy(&c.service, addr).await;
        }
    }
    eprintln!(
        "containers test: {} containers healthy {:.1} s after start",
        plan.containers.len() + 1,
        started.elapsed().as_secs_f64()
    );

    let sip: Vec<_> = plan
        .containers
        .iter()
        .filter(|c| c.role == Role::SipNode)
        .collect();
    control
        .wait_mesh(&sip, "TC mesh across containers", Mesh::Full)
        .await;

    let applied = cut(&plan, "dc1", "dc2", CutScope::All)
        .unwrap_or_else(|e| panic!("iptables cut in the wan container: {e:#}"));
    assert_eq!(rules(&plan).expect("iptables -S in wan"), applied);
    control
        .wait_mesh(&sip, "R10 (DC cut: TC links across go down)", Mesh::SameDc)
        .await;

    heal(&plan).unwrap_or_else(|e| panic!("iptables flush in the wan container: {e:#}"));
    assert!(rules(&plan).expect("iptables -S in wan").is_empty());
    control
        .wait_mesh(&sip, "heal: TC links come back up", Mesh::Full)
        .await;
    eprintln!(
        "containers test: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
