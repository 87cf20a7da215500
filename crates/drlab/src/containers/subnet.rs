//! IPv4 subnets for the lab's Docker networks, and the addresses drlab hands out from them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet such as `172.30.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The narrowest and widest subnets a lab network may have.
const PREFIX_RANGE: std::ops::RangeInclusive<u8> = 16..=28;

impl Subnet {
    /// The default subnet of the lab's `n`-th network: `172.30.<n>.0/24`.
    pub fn default_for(n: u8) -> Subnet {
        Subnet {
            network: Ipv4Addr::new(172, 30, n, 0),
            prefix: 24,
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`-th address of the subnet (`.1` is Docker's gateway on the host).
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        (n > 0 && n < size - 1).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The last usable address: where the `wan` router sits.
    pub fn last_host(&self) -> Ipv4Addr {
        let size = 1u32 << (32 - u32::from(self.prefix));
        Ipv4Addr::from(u32::from(self.network) + size - 2)
    }

    /// Docker's gateway (the host's side of the bridge): the first address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// A private (RFC 1918) IPv4 subnet with a /16 to /28 prefix and no host bits set.
    fn from_str(text: &str) -> Result<Subnet, String> {
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a subnet: write it as 172.30.1.0/24"))?;
        let network: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("`{ip}` in `{text}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{prefix}` in `{text}` is not a prefix length"))?;
        if !PREFIX_RANGE.contains(&prefix) {
            return Err(format!(
                "`{text}`: the prefix must be /{} to /{}",
                PREFIX_RANGE.start(),
                PREFIX_RANGE.end()
            ));
        }
        if !network.is_private() {
            return Err(format!(
                "`{text}` is not a private range: use one in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            ));
        }
        let subnet = Subnet { network, prefix };
        if u32::from(network) & subnet.mask() != u32::from(network) {
            return Err(format!(
                "`{text}` has host bits set: write its network address ({}/{prefix})",
                Ipv4Addr::from(u32::from(network) & subnet.mask())
            ));
        }
        Ok(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_hand_out_addresses() {
        let s: Subnet = "172.30.1.0/24".parse().unwrap();
        assert_eq!(s, Subnet::default_for(1));
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 30, 1, 1));
        assert_eq!(s.host(10), Some(Ipv4Addr::new(172, 30, 1, 10)));
        assert_eq!(s.host(255), None);
        assert_eq!(s.last_host(), Ipv4Addr::new(172, 30, 1, 254));
        assert!(s.contains(Ipv4Addr::new(172, 30, 1, 77)));
        assert!(!s.contains(Ipv4Addr::new(172, 30, 2, 77)));
        let wide: Subnet = "172.30.0.0/16".parse().unwrap();
        assert!(wide.overlaps(&s) && s.overlaps(&wide));
        assert!(!s.overlaps(&Subnet::default_for(2)));
    }

    #[test]
    fn bad_subnets_say_what_to_write() {
        assert!("172.30.1.0"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("172.30.1.0/24"));
        assert!("8.8.8.0/24"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("private"));
        assert!("172.30.1.5/24"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("172.30.1.0/24"));
        assert!("10.0.0.0/30".parse::<Subnet>().unwrap_err().contains("/28"));
    }
}
