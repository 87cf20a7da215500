//! Link-name patterns: `*` matches any run of characters, everything else matches itself.

/// Whether `name` matches `pattern` (`tc:*dc2*` matches `tc:ss1-dc2-ss3`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative wildcard match with single backtrack point: O(len(p) * len(n)) worst case.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("tc:*dc2*", "tc:ss1-dc2-ss3"));
        assert!(matches("*", ""));
        assert!(matches("sip:ss1", "sip:ss1"));
        assert!(!matches("sip:ss1", "sip:ss10"));
        assert!(matches("sip:ss1*", "sip:ss10"));
        assert!(matches("tc:*", "tc:ss1-ss3"));
        assert!(!matches("tc:*", "tlib:gws1-ss1"));
        assert!(matches("*ss3", "tc:ss1-ss3"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
    }
}
