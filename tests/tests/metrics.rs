//! `/metrics` of every node type, the proxy and softphone-sim, read by a strict OpenMetrics
//! parser: Python `prometheus_client`'s (skipped with a SKIPPED line when it is not installed,
//! unless `DRLAB_REQUIRE_PROMCLIENT` is set). Scraped after traffic that gives the labelled
//! families samples: a REGISTER, a proxied request and a fault rule on every node.

use std::collections::BTreeMap;
use std::process::Stdio;

use drlab_tests::cluster::node;
use drlab_tests::desktop::lab_behind_proxy;
use drlab_tests::PATIENCE;
use serde_json::{json, Value};
use softphone_sim::{PhoneConfig, Swarm};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads a JSON object `{endpoint: exposition}` on stdin; prints `{endpoint: {"families":
/// {name: {"type": t, "samples": [[name, labels, value]]}}}` or `{endpoint: {"error": why}}`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for endpoint, text in json.load(sys.stdin).items():
    try:
        out[endpoint] = {"families": {
            f.name: {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
            for f in text_string_to_metric_families(text)}}
    except Exception as e:
        out[endpoint] = {"error": repr(e)}
json.dump(out, sys.stdout)
"#;

/// Every exposition through the strict parser.
async fn parse_openmetrics(expositions: &BTreeMap<String, String>) -> Value {
    let mut python = tokio::process::Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = python.stdin.take().expect("piped stdin");
    stdin
        .write_all(&serde_json::to_vec(expositions).unwrap())
        .await
        .unwrap();
    drop(stdin);
    let out = python.wait_with_output().await.unwrap();
    assert!(out.status.success(), "the parser script failed");
    serde_json::from_slice(&out.stdout).expect("the parser script prints JSON")
}

/// The samples of `family` at `endpoint`, failing the test when the family is missing.
fn samples<'a>(parsed: &'a Value, endpoint: &str, family: &str) -> &'a Vec<Value> {
    parsed[endpoint]["families"][family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("{endpoint}: no family {family}: {}", parsed[endpoint]))
}

#[tokio::test]
async fn every_node_proxy_and_softphone_sim_serve_metrics_a_strict_openmetrics_parser_accepts() {
    let parser = nodekit::peer::runs(
        "python3",
        &["-c", "import prometheus_client.openmetrics.parser"],
    );
    if !nodekit::peer::available(
        parser,
        "the OpenMetrics parser of prometheus_client",
        "DRLAB_REQUIRE_PROMCLIENT",
        "pip install prometheus_client",
    ) {
        return;
    }
    let (lab, proxy_http) = lab_behind_proxy().await;
    let ss1 = node(&lab, "ss1");
    let phones = Swarm::start(PhoneConfig::phones(["7001"], [ss1.sip_addr()]).with_fast_timers())
        .await
        .expect("softphone-sim starts");
    let phones_control = phones
        .serve_control("127.0.0.1:0".parse().unwrap())
        .await
        .expect("softphone-sim control plane");
    assert!(
        phones.until_registered(Instant::now() + PATIENCE).await,
        "phone 7001 registered at ss1"
    );
    let http = reqwest::Client::new();
    let version = http
        .get(format!("http://{proxy_http}/api/v2/diagnostics/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200, "a request proxied by proxy-dc1");

    let mut controls: Vec<(String, std::net::SocketAddr)> = Vec::new();
    controls.extend(
        lab.sip_nodes
            .iter()
            .map(|n| (n.name().to_owned(), n.control_addr())),
    );
    controls.extend(
        lab.gws_nodes
            .iter()
            .map(|n| (n.name().to_owned(), n.control_addr())),
    );
    for p in &lab.proxy_endpoints {
        let control = p
            .control
            .expect("the topology gives proxies a control port");
        controls.push((p.name.clone(), control));
    }
    controls.push((phones.name().to_owned(), phones_control));

    let rule = json!({ "link": "metrics-test:*", "mode": "drop" });
    let mut expositions = BTreeMap::new();
    for (name, control) in &controls {
        let added = http
            .post(format!("http://{control}/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 201, "{name}: fault rule added");
        let resp = http
            .get(format!("http://{control}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], OPENMETRICS, "{name}");
        expositions.insert(name.clone(), resp.text().await.unwrap());
    }

    let parsed = parse_openmetrics(&expositions).await;
    for (name, _) in &controls {
        let result = &parsed[name.as_str()];
        assert!(
            result["error"].is_null(),
            "{name}: the strict parser refused /metrics: {}\n{}",
            result["error"],
            expositions[name]
        );
        for family in result["families"].as_object().unwrap().values() {
            for sample in family["samples"].as_array().unwrap() {
                assert_eq!(sample[1]["node"], name.as_str(), "{name}: {sample}");
            }
        }
        let rules = samples(&parsed, name, "drlab_fault_rules");
        assert_eq!(rules[0][2], 1.0, "{name}: one fault rule in force");
        assert_eq!(
            parsed[name.as_str()]["families"]["drlab_fault_dropped_datagrams"]["type"],
            "counter",
            "{name}"
        );
    }
    let answered = samples(&parsed, "ss1", "drlab_sip_responses");
    assert!(
        answered.iter().any(|s| s[1]["code"] == "200"),
        "ss1 counted its 200 to the REGISTER: {answered:?}"
    );
    let selected = samples(&parsed, "proxy-dc1", "proxy_peer_selected");
    assert!(
        selected
            .iter()
            .any(|s| s[1]["peer"].is_string() && s[2].as_f64() >= Some(1.0)),
        "proxy-dc1 counted the peer it selected: {selected:?}"
    );
    let registrations = samples(&parsed, phones.name(), "softphone_registrations");
    assert_eq!(
        registrations[0][2], 1.0,
        "softphone-sim counted its REGISTER"
    );
    phones.shutdown();
    lab.shutdown().await;
}
