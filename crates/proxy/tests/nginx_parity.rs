//! Real nginx (Debian package, `/usr/sbin/nginx`) and this proxy side by side in front of the
//! same upstreams, on the same failure sequence: the routing decisions of `hash $cookie_JSESSIONID
//! consistent` and `ip_hash` must be identical. Skipped (with a notice) where nginx is not
//! installed, unless `DRLAB_REQUIRE_NGINX` is set; `apt-get install nginx` makes it run.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestUpstream;
use proxy::Sticky;

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(balancer: &str, ups: &[&TestUpstream], tag: &str) -> Nginx {
    let dir = std::env::temp_dir().join(format!("proxy-nginx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let servers: String = ups
        .iter()
        .map(|u| format!("    server {} max_fails=1 fail_timeout=1s;\n", u.addr))
        .collect();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream g {{\n    {balancer};\n{servers}  }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://g;\n\
               proxy_connect_timeout 1s;\n      proxy_read_timeout 5s;\n    }}\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The guard owns the child from here on, so every path kills and reaps it.
    let nginx = Nginx { child, addr, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "nginx did not start: {}",
        read(&nginx.dir.join("error.log"))
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Which upstream answered `cookie` through `front`, as seen from `from`.
async fn who(c: &reqwest::Client, front: SocketAddr, cookie: Option<&str>) -> String {
    let mut rb = c.get(format!("http://{front}/"));
    if let Some(v) = cookie {
        rb = rb.header("cookie", format!("JSESSIONID={v}"));
    }
    let r = rb.send().await.unwrap();
    format!("{} {}", r.status().as_u16(), r.text().await.unwrap())
}

fn have_nginx() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    nodekit::peer::available(false, NGINX, "DRLAB_REQUIRE_NGINX", "apt-get install nginx")
}

async fn three() -> Vec<TestUpstream> {
    vec![
        TestUpstream::start("gws1").await,
        TestUpstream::start("gws2").await,
        TestUpstream::start("gws3").await,
    ]
}

#[tokio::test]
async fn hash_consistent_routes_like_nginx_through_failure_and_return() {
    if !have_nginx() {
        return;
    }
    let mut ups = three().await;
    let refs: Vec<&TestUpstream> = ups.iter().collect();
    let ngx = start_nginx("hash $cookie_JSESSIONID consistent", &refs, "hash").await;
    let ours = proxy::start(common::config(&refs, Sticky::Hash))
        .await
        .unwrap();
    let c = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let keys: Vec<String> = (0..60).map(|i| format!("{:032X}", i * 7919 + 13)).collect();
    let compare = |phase: &'static str| {
        let (c, keys, ngx_addr, ours_addr) = (c.clone(), keys.clone(), ngx.addr, ours.local_addr());
        async move {
            let mut spread = std::collections::BTreeMap::new();
            for k in &keys {
                let a = who(&c, ngx_addr, Some(k)).await;
                let b = who(&c, ours_addr, Some(k)).await;
                assert_eq!(b, a, "{phase}: key {k}");
                *spread.entry(a).or_insert(0) += 1;
            }
            spread
        }
    };
    let before = compare("all up").await;
    assert_eq!(before.len(), 3, "keys spread over all nodes: {before:?}");
    // Empty key: round robin in both, in the same order.
    for _ in 0..6 {
        assert_eq!(
            who(&c, ours.local_addr(), None).await,
            who(&c, ngx.addr, None).await
        );
    }
    ups[1].kill();
    let during = compare("gws2 down").await;
    assert!(!during.keys().any(|k| k.contains("gws2")), "{during:?}");
    ups[1].restart().await;
    // nginx counts fail_timeout in whole seconds.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after = compare("gws2 back").await;
    assert_eq!(after, before, "both fail back to the ring owner");
}

#[tokio::test]
async fn ip_hash_routes_like_nginx_through_failure() {
    if !have_nginx() {
        return;
    }
    let mut ups = three().await;
    let refs: Vec<&TestUpstream> = ups.iter().collect();
    let ngx = start_nginx("ip_hash", &refs, "iphash").await;
    let ours = proxy::start(common::config(&refs, Sticky::IpHash))
        .await
        .unwrap();
    // Clients from 40 different /24s: 127.0.N.7 (and one more host in each /24).
    let nets: Vec<u8> = (1..=40).collect();
    let compare = |phase: &'static str| {
        let (nets, ngx_addr, ours_addr) = (nets.clone(), ngx.addr, ours.local_addr());
        async move {
            let mut spread = std::collections::BTreeMap::new();
            for n in &nets {
                for host in [7u8, 200] {
                    let c = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, *n, host)));
                    let a = who(&c, ngx_addr, None).await;
                    let b = who(&c, ours_addr, None).await;
                    assert_eq!(b, a, "{phase}: client 127.0.{n}.{host}");
                    *spread.entry(a).or_insert(0) += 1;
                }
            }
            spread
        }
    };
    let before = compare("all up").await;
    assert_eq!(before.len(), 3, "{before:?}");
    ups[0].kill();
    let during = compare("gws1 down").await;
    assert!(!during.keys().any(|k| k.contains("gws1")), "{during:?}");
}
