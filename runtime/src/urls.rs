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
