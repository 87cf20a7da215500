//! The ketama ring of `hash … consistent` (nginx `ngx_http_upstream_init_chash`), compatible with
//! Cache::Memcached::Fast: each server gets `160 × weight` points, point `j` being
//! `crc32(HOST "\0" PORT prev_hash)` where `prev_hash` is the previous point's hash as four
//! little-endian bytes (0 for the first point).

use crate::crc32::Crc32;

/// One point on the ring: its hash and the index of the peer it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub hash: u32,
    pub peer: usize,
}

/// The sorted, de-duplicated ring.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<Point>,
}

/// Points per unit of weight, as in nginx.
pub const POINTS_PER_WEIGHT: u32 = 160;

impl Ring {
    /// Builds the ring over `servers`: `(peer index, server text as written in the config,
    /// weight)`. The server text is split at its last `:` into host and port, as nginx does.
    pub fn new<'a>(servers: impl IntoIterator<Item = (usize, &'a str, u32)>) -> Self {
        let mut points = Vec::new();
        for (peer, server, weight) in servers {
            let (host, port) = match server.strip_prefix("unix:") {
                Some(path) => (path, ""),
                None => match server.rfind(':') {
                    Some(i) => (&server[..i], &server[i + 1..]),
                    None => (server, ""),
                },
            };
            let mut base = Crc32::new();
            base.update(host.as_bytes());
            base.update(b"\0");
            base.update(port.as_bytes());
            let mut prev: u32 = 0;
            for _ in 0..weight * POINTS_PER_WEIGHT {
                let mut h = base;
                h.update(&prev.to_le_bytes());
                let hash = h.finish();
                points.push(Point { hash, peer });
                prev = hash;
            }
        }
        // ngx_qsort is not stable; a stable sort keeps the first server's point on a collision.
        points.sort_by_key(|p| p.hash);
        points.dedup_by_key(|p| p.hash);
        Ring { points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The point at `index` modulo the ring size (the walk wraps around).
    pub fn point(&self, index: usize) -> Point {
        self.points[index % self.points.len()]
    }

    /// Index of the first point whose hash is `>= hash` (`ngx_http_upstream_find_chash_point`);
    /// may equal `len()`, which wraps to point 0.
    pub fn find(&self, hash: u32) -> usize {
        let (mut i, mut j) = (0usize, self.points.len());
        while i < j {
            let k = (i + j) / 2;
            let p = self.points[k].hash;
            if hash > p {
                i = k + 1;
            } else if hash < p {
                j = k;
            } else {
                return k;
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc32::crc32;

    fn ring3() -> Ring {
        Ring::new([
            (0, "127.0.0.1:8081", 1),
            (1, "127.0.0.1:8082", 1),
            (2, "127.0.0.1:8083", 1),
        ])
    }

    #[test]
    fn has_160_points_per_weight_sorted() {
        let r = Ring::new([(0, "a:1", 1), (1, "b:1", 2)]);
        assert_eq!(r.len(), 480);
        let hashes: Vec<u32> = (0..r.len()).map(|i| r.point(i).hash).collect();
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(r.points.iter().filter(|p| p.peer == 1).count(), 320);
    }

    #[test]
    fn first_point_is_crc_of_host_nul_port_zero() {
        let r = Ring::new([(0, "10.0.0.1:80", 1)]);
        let mut expect = b"10.0.0.1\x0080".to_vec();
        expect.extend_from_slice(&[0, 0, 0, 0]);
        let h = crc32(&expect);
        assert!(r.points.iter().any(|p| p.hash == h));
    }

    #[test]
    fn find_is_lower_bound_and_wraps() {
        let r = ring3();
        let first = r.point(0).hash;
        assert_eq!(r.find(first), 0);
        assert_eq!(r.find(0), 0);
        assert_eq!(r.find(u32::MAX), r.len());
        assert_eq!(r.point(r.find(u32::MAX)).hash, first);
        let p5 = r.point(5).hash;
        assert_eq!(r.find(p5 - 1), 5);
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let full = ring3();
        let part = Ring::new([(0, "127.0.0.1:8081", 1), (1, "127.0.0.1:8082", 1)]);
        let mut moved_other = 0;
        for k in 0..2000u32 {
            let h = crc32(format!("session-{k}").as_bytes());
            let a = full.point(full.find(h)).peer;
            let b = part.point(part.find(h)).peer;
            if a != 2 && a != b {
                moved_other += 1;
            }
        }
        assert_eq!(moved_other, 0);
    }
}
