//! Where the audit trail is streamed: `serve --audit-syslog tls://HOST:PORT`. Plain `tcp://`
//! and `udp://` carry it unencrypted and are accepted only for a loopback address (a relay
//! on the same host).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// How the messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RFC 5425: TLS, octet-counting framing; the default port is 6514.
    Tls,
    /// RFC 6587: plain TCP, octet-counting framing (loopback only).
    Tcp,
    /// RFC 5426: one message per datagram, no framing and no delivery confirmation
    /// (loopback only).
    Udp,
}

impl Transport {
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 6514,
            Transport::Tcp | Transport::Udp => 514,
        }
    }
}

/// A collector's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    /// A DNS name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl SyslogTarget {
    /// `host:port`, bracketing an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.transport.scheme(), self.authority())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error(
        "{0:?} is not a collector URL: use tls://HOST:PORT (or tcp:// or udp:// to a loopback address)"
    )]
    NotAUrl(String),
    #[error(
        "unknown scheme {0:?}: use tls://HOST:PORT (or tcp:// or udp:// to a loopback address)"
    )]
    Scheme(String),
    #[error("{0:?} names no host")]
    NoHost(String),
    #[error("{0:?} is not a host name or an IP address")]
    BadHost(String),
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("{0:?} has a path, query or user part; give only scheme://HOST:PORT")]
    Extra(String),
    #[error(
        "{0} sends the audit trail unencrypted and is accepted only to a loopback address (127.0.0.1, ::1, localhost), e.g. a relay on this host; use tls://{1}"
    )]
    NotLoopback(String, String),
}

impl FromStr for SyslogTarget {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| TargetError::NotAUrl(text.to_owned()))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "tls" => Transport::Tls,
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return Err(TargetError::Scheme(scheme.to_owned())),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(TargetError::Extra(text.to_owned()));
        }
        let (host, port) = split_host_port(rest)?;
        if host.is_empty() {
            return Err(TargetError::NoHost(text.to_owned()));
        }
        let is_ip = host.parse::<IpAddr>().is_ok();
        if !is_ip && !ward_certs::ca::is_dns_name(host) {
            return Err(TargetError::BadHost(host.to_owned()));
        }
        let port = match port {
            None => transport.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(TargetError::BadPort(p.to_owned())),
            },
        };
        let target = SyslogTarget {
            transport,
            host: host.to_ascii_lowercase(),
            port,
        };
        if transport != Transport::Tls && !is_loopback(&target.host) {
            return Err(TargetError::NotLoopback(
                format!("{scheme}://"),
                target.authority(),
            ));
        }
        Ok(target)
    }
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), TargetError> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| TargetError::BadHost(text.to_owned()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TargetError::BadHost(host.to_owned()));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(TargetError::BadHost(text.to_owned())),
            },
        };
    }
    match text.split_once(':') {
        Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
        // An IPv6 address must be bracketed.
        Some(_) => Err(TargetError::BadHost(text.to_owned())),
        None => Ok((text, None)),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SyslogTarget, TargetError> {
        text.parse()
    }

    #[test]
    fn tls_to_any_host_with_the_default_port_6514() {
        let t = parse("tls://siem.hospital.example").unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port),
            (Transport::Tls, "siem.hospital.example", 6514)
        );
        assert_eq!(parse("TLS://10.1.2.3:1514").unwrap().port, 1514);
        let v6 = parse("tls://[2001:db8::1]:6514").unwrap();
        assert_eq!(v6.host, "2001:db8::1");
        assert_eq!(v6.to_string(), "tls://[2001:db8::1]:6514");
    }

    #[test]
    fn plain_tcp_and_udp_only_to_loopback() {
        assert!(parse("tcp://127.0.0.1:514").is_ok());
        assert!(parse("udp://[::1]:514").is_ok());
        assert!(parse("tcp://localhost:10514").is_ok());
        for remote in [
            "tcp://10.0.0.5:514",
            "udp://siem.example:514",
            "tcp://[2001:db8::1]",
        ] {
            let e = parse(remote).unwrap_err();
            assert!(matches!(e, TargetError::NotLoopback(..)), "{remote}: {e}");
            assert!(e.to_string().contains("use tls://"), "{e}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        for (text, what) in [
            ("siem.example:6514", "not a collector URL"),
            ("https://siem.example", "unknown scheme"),
            ("tls://", "names no host"),
            ("tls://:6514", "names no host"),
            ("tls://siem.example:0", "port"),
            ("tls://siem.example:99999", "port"),
            ("tls://siem.example:x", "port"),
            ("tls://siem.example/path", "path"),
            ("tls://user@siem.example", "user"),
            ("tls://2001:db8::1", "not a host name"),
            ("tls://bad_host!", "not a host name"),
            ("tls://[not-v6]:1", "not a host name"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(what), "{text}: {e}");
        }
    }
}
