//! Rough cost of the registrar hot path (parse → transaction → fields → 200 OK → bytes).
//! `cargo test -p sipcore --release --test hot_path -- --ignored --nocapture`

use std::time::{Duration, Instant};

use bytes::Bytes;
use sipcore::builder::{add_contact, set_expires};
use sipcore::{
    fields, parse_datagram, response_for, Datagram, RequestBuilder, ServerTransactions,
    TimerConfig, TxVerdict,
};

#[test]
#[ignore = "timing, run by hand"]
fn register_hot_path_rate() {
    let local = "198.51.100.20:5060".parse().unwrap();
    let reqs: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            RequestBuilder::register(
                "sip:198.51.100.10:5060",
                &format!("sip:{}@example.com", 1000 + i),
                local,
                1800,
            )
            .build()
            .unwrap()
            .to_string()
            .into_bytes()
        })
        .collect();
    let mut tx = ServerTransactions::new(TimerConfig::default(), 200_000);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for raw in &reqs {
            let now = Instant::now();
            let Ok(Datagram::Message(rsip::SipMessage::Request(req))) = parse_datagram(raw) else {
                panic!()
            };
            let key = match tx.on_request(&req, now).unwrap() {
                TxVerdict::New(k) => k,
                _ => continue,
            };
            let dn = fields::dn_from_to_uri(&req).unwrap();
            let exp = fields::expires_of_contact(&req).unwrap().unwrap_or(3600);
            let mut resp = response_for(&req, rsip::StatusCode::OK);
            let contact = format!("<sip:{dn}@198.51.100.20:5060>");
            add_contact(&mut resp, &contact, Some(exp));
            set_expires(&mut resp, exp);
            let bytes = Bytes::from(resp.to_string());
            tx.on_response(&key, bytes, now, false);
            n += 1;
        }
        tx.purge(Instant::now() + Duration::from_secs(60));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("registrar hot path: {rate:.0} REGISTER/s on one core");
}
