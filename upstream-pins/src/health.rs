//! `GET /status` over TLS with the configured CA as the only trust root.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::config::ServerFile;

pub fn check(f: &ServerFile) -> Result<(), String> {
    let bind = f.bind();
    let addr = bind
        .to_socket_addrs()
        .map_err(|e| format!("bad bindaddress {}: {}", bind, e))?
        .next()
        .ok_or_else(|| format!("bindaddress {} resolves to nothing", bind))?;
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(f.resolve(&f.tls_ca)).map_err(|e| format!("tls_ca: {}", e))?;
    b.set_verify(SslVerifyMode::PEER);
    let connector = b.build();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let host = addr.ip().to_string();
    let mut tls = connector.connect(&host, tcp).map_err(|e| format!("TLS: {}", e))?;
    let req = format!("GET /status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", bind);
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    let status_ok = resp.starts_with("HTTP/1.1 200");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status_ok && body.ends_with("true") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {}", resp.lines().next().unwrap_or("")))
    }
}
