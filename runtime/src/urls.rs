//! The URLs a serving controller announces: to devices, and to a `wardctl` on this host.

use std::net::SocketAddr;

use ward_proto::transport::ServerUrl;

use crate::error::ServeError;

/// Where a `wardctl` on this host reaches the server: loopback when listening on all or
/// loopback addresses, otherwise the controller's name.
pub(crate) fn local_host(addr: SocketAddr, controller_name: &str) -> String {
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        if ip.is_ipv6() && !ip.is_unspecified() {
            "::1".into()
        } else {
            "127.0.0.1".into()
        }
    } else {
        controller_name.to_owned()
    }
}

pub(crate) fn url_for(host: &str, port: u16) -> Result<String, ServeError> {
    let text = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    text.parse::<ServerUrl>()
        .map(|u| u.to_string())
        .map_err(ServeError::Url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wardctl_on_this_host_uses_loopback_unless_bound_to_one_address() {
        let at = |addr: &str| {
            local_host(
                addr.parse().unwrap_or_else(|e| panic!("{e}")),
                "ward.example",
            )
        };
        assert_eq!(at("0.0.0.0:7443"), "127.0.0.1");
        assert_eq!(at("[::]:7443"), "127.0.0.1");
        assert_eq!(at("127.0.0.1:7443"), "127.0.0.1");
        assert_eq!(at("[::1]:7443"), "::1");
        assert_eq!(at("192.0.2.1:7443"), "ward.example");
    }

    #[test]
    fn urls_bracket_ipv6_hosts() {
        assert_eq!(
            url_for("::1", 7443).ok().as_deref(),
            Some("https://[::1]:7443")
        );
        assert_eq!(
            url_for("ward.example", 9444).ok().as_deref(),
            Some("https://ward.example:9444")
        );
    }
}
