//! The scenario report in a real browser: S1's page rendered by headless Chromium holds the lanes,
//! the fault's band, one marker per assertion id of the case and the arrows of Call1's INVITE,
//! and its screenshot is a picture, not a blank page; a storm-sized page (20,000 messages) opens
//! quickly because only the rows in view are drawn. Skipped without chromium (CI sets
//! `DRLAB_REQUIRE_CHROMIUM=1`).

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drlab::report::model::{
    CaptureFile, Captured, CaseCapture, CaseRun, Check, Journal, Lane, NodeCapture, CAPTURE_FORMAT,
    JOURNAL_FORMAT,
};
use drlab::scenario::{self, Options, ScenarioId};
use drlab::Topology;
use drlab_tests::browser::{chromium, chromium_available};

/// A fresh directory under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drlab-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs headless Chromium on the file `page` in a 1600×1000 window; its stdout.
async fn open(page: &Path, args: &[String]) -> String {
    let mut all = vec![
        "--hide-scrollbars".to_owned(),
        "--window-size=1600,1000".to_owned(),
    ];
    all.extend_from_slice(args);
    let output = chromium(
        &format!("file://{}", page.display()),
        &all,
        Duration::from_secs(120),
    )
    .await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of `data-NAME` on the body of a dumped DOM.
fn body_data(dom: &str, name: &str) -> Option<f64> {
    let at = dom.find(&format!("data-{name}=\""))? + name.len() + 7;
    dom[at..].split('"').next()?.parse().ok()
}

/// The screenshot's size, distinct colours and share of non-white pixels (PNG, 8-bit RGB/RGBA).
fn png_stats(png: &[u8]) -> (u32, u32, usize, f64) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (mut at, mut idat) = (8, Vec::new());
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "8-bit samples");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("PNG data inflates");
    let stride = width as usize * channels;
    let mut prev = vec![0u8; stride];
    let mut colours = HashSet::new();
    let mut inked = 0usize;
    for row in raw.chunks(stride + 1).take(height as usize) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = line.to_vec();
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 } as i16;
            let b = prev[i] as i16;
            let c = if i >= channels { prev[i - channels] } else { 0 } as i16;
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = cur[i].wrapping_add(add as u8);
        }
        for px in cur.chunks(channels) {
            colours.insert([px[0], px[1], px[2]]);
            if px[..3] != [255, 255, 255] {
                inked += 1;
            }
        }
        prev = cur;
    }
    let share = inked as f64 / (width as f64 * height as f64);
    (width, height, colours.len(), share)
}

/// The default topology on 127.0.110.x / .111.x / .112.x, away from every other test's lab.
fn topology() -> Topology {
    drlab_tests::moved_topology(110)
}

/// S1 a with `--report`: the page shows the story — lanes grouped by DC, the band of GWS1's
/// crash, a marker for every id the case checks (S1.1–S1.8, R3–R6, R8, R14) and Call1's INVITE
/// from the caller to ss1 and on to the gateway — and its screenshot is a real picture.
#[tokio::test]
async fn s1_report_page_shows_lanes_band_markers_and_call1_invite_in_chromium() {
    if !chromium_available() {
        return;
    }
    netfault::capture::set_process_limit(20_000);
    let recorder = drlab::report::Recorder::default();
    let opts = Options {
        topology: topology(),
        profile: "fast".into(),
        faults: drlab::orchestra::faults::Via::Builtin,
        recorder: Some(recorder.clone()),
    };
    let cases = scenario::cases(&["S1".into()], Some("a")).unwrap();
    let report = scenario::run(&cases, &opts, |_| {}).await.expect("S1 runs");
    let dir = scratch("s1");
    let (journal, capture) = recorder.finish(&report);
    drlab::report::write(&dir, &journal, &capture).expect("report written");
    for file in ["index.html", "S1-a.html", "journal.json", "capture.json"] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    // Call1 goes to Agent1's DN, and on to the gateway as that DN's external number.
    let roles = drlab::orchestra::roles::Roles::from_topology(&opts.topology).unwrap();
    let call1 = format!("{}@", roles.pstn[0].dn);

    let page = dir.join("S1-a.html");
    let dom = open(&page, &["--dump-dom".into()]).await;
    for lane in [
        "desktops",
        "proxy-dc1",
        "gws1",
        "gws2",
        "ss1",
        "ss3",
        "gws3",
        "caller",
    ] {
        assert!(
            dom.contains(&format!("data-lane=\"{lane}\"")),
            "lane {lane} on the page"
        );
    }
    assert!(
        dom.contains(">dc1<") && dom.contains(">dc2<"),
        "lanes grouped by DC"
    );
    assert!(dom.contains("id=\"band\""), "the fault's band");
    for id in ScenarioId::S1.ids("a") {
        let marker = format!("data-id=\"{id}\"");
        assert!(dom.contains(&marker), "a marker for {id}");
    }
    let invites: Vec<&str> = dom
        .split("<g ")
        .filter(|g| g.starts_with("data-row") || g.starts_with("class=\"arrow"))
        .filter_map(|g| g.split_once("data-summary=\"INVITE sip:"))
        .filter(|(_, rest)| rest.split('"').next().unwrap_or("").contains(&call1))
        .map(|(_, rest)| rest)
        .collect();
    assert!(
        invites
            .iter()
            .any(|g| g.contains("data-from=\"caller\"") && g.contains("data-to=\"ss1\"")),
        "Call1's INVITE from the caller to ss1 ({} INVITE arrows)",
        invites.len()
    );
    assert!(
        invites
            .iter()
            .any(|g| g.contains("data-from=\"ss1\"") && g.contains("data-to=\"pstn-gateway\"")),
        "Call1's INVITE from ss1 on to the gateway"
    );

    let shot = dir.join("S1-a.png");
    open(&page, &[format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    let (w, h, colours, inked) = png_stats(&png);
    println!(
        "S1 a screenshot: {w}x{h}, {} bytes, {colours} colours, {:.1} % inked",
        png.len(),
        inked * 100.0
    );
    assert!((w, h) == (1600, 1000), "{w}x{h}");
    assert!(colours >= 50, "only {colours} colours: a blank page?");
    assert!(
        inked > 0.05,
        "only {:.1} % of the pixels are not white",
        inked * 100.0
    );
    if let Some(keep) = std::env::var_os("DRLAB_REPORT_KEEP") {
        copy_dir(&dir, Path::new(&keep));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A storm-sized capture: 20,000 messages between ten lanes. The page opens in Chromium within
/// seconds and draws only the rows in view.
#[tokio::test]
async fn a_page_of_20000_messages_opens_and_draws_only_what_is_in_view() {
    if !chromium_available() {
        return;
    }
    const MESSAGES: usize = 20_000;
    let lanes: Vec<Lane> = (0..10)
        .map(|i| Lane {
            name: format!("ss{i}"),
            group: if i < 5 { "dc1" } else { "dc2" }.into(),
            kind: "sip".into(),
            sockets: Vec::new(),
            addresses: vec![format!("127.0.50.{}", i + 1).parse().unwrap()],
        })
        .collect();
    let start = 1_700_000_000_000u64;
    let records: Vec<Captured> = (0..MESSAGES)
        .map(|i| Captured {
            at_ms: start + i as u64,
            link: "sip:ss0".into(),
            dir: "out".into(),
            peer: SocketAddr::new(format!("127.0.50.{}", i % 9 + 2).parse().unwrap(), 5060),
            proto: "sip".into(),
            summary: format!("REGISTER sip:ss0 CSeq {i}"),
            key: Some(format!("call-{i}")),
            message: format!("REGISTER sip:ss0 SIP/2.0\r\nCSeq: {i} REGISTER\r\n\r\n"),
        })
        .collect();
    let journal = Journal {
        format: JOURNAL_FORMAT.into(),
        wall_ms: MESSAGES as u64,
        cases: vec![CaseRun {
            scenario: "S9".into(),
            variant: "-".into(),
            started_ms: start,
            ended_ms: start + MESSAGES as u64,
            fault_ms: start + 5_000,
            lanes,
            checks: vec![Check {
                id: "R12".into(),
                pass: true,
                ms: Some(100),
                at_ms: start + 5_100,
                evidence: "synthetic".into(),
                statement: "synthetic".into(),
            }],
            events: Vec::new(),
        }],
    };
    let capture = CaptureFile {
        format: CAPTURE_FORMAT.into(),
        cases: vec![CaseCapture {
            scenario: "S9".into(),
            variant: "-".into(),
            nodes: vec![NodeCapture {
                node: "ss0".into(),
                records,
                media: Vec::new(),
            }],
        }],
    };
    let dir = scratch("storm");
    drlab::report::write(&dir, &journal, &capture).expect("report written");
    let page = dir.join("S9.html");
    let started = Instant::now();
    let dom = open(&page, &["--dump-dom".into()]).await;
    let wall = started.elapsed();
    let items = body_data(&dom, "items").expect("the page ran its script");
    let drawn = body_data(&dom, "drawn").unwrap();
    let render_ms = body_data(&dom, "render-ms").unwrap();
    println!(
        "20000-message page: {} bytes, script {render_ms} ms, chromium {} ms in all, {drawn} of {items} rows drawn",
        std::fs::metadata(&page).unwrap().len(),
        wall.as_millis()
    );
    assert!(items >= MESSAGES as f64, "{items} rows");
    assert!(drawn < 1_000.0, "{drawn} rows drawn: not virtualised");
    assert!(render_ms < 5_000.0, "the script took {render_ms} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
