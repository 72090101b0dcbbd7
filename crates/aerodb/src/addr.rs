//! Address flags checked at parse time, before anything touches the data
//! directory (issue 14, item 5): `--listen`, `--repl-listen`,
//! `--dx-listen` take `HOST:PORT` (port 0 picks a free port), and
//! `--primary` takes the primary's replication address `HOST:PORT` with a
//! real port. Pure string checks: nothing is resolved here.

/// Checks `HOST:PORT` and returns `(host, port)`; `what` names the flag.
fn host_port<'a>(input: &'a str, what: &str, example: &str) -> Result<(&'a str, u16), String> {
    if input.contains("://") {
        return Err(format!("{what} takes HOST:PORT, not a URL (e.g. {example})"));
    }
    let (host, port) = if let Some(v6) = input.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("unterminated IPv6 literal in {input:?}; expected e.g. [::1]:7700"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("{what} needs a port: HOST:PORT, e.g. {example}"));
        };
        (&input[..addr.len() + 2], port)
    } else {
        let Some((host, port)) = input.rsplit_once(':') else {
            return Err(format!("{what} needs a port: HOST:PORT, e.g. {example}"));
        };
        if host.contains(':') {
            return Err(format!("IPv6 addresses go in brackets, e.g. [::1]:{port}"));
        }
        let plausible = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !plausible {
            return Err(format!("{host:?} is not a host name or IP address (expected HOST:PORT, e.g. {example})"));
        }
        (host, port)
    };
    let port = port.parse::<u16>().map_err(|_| format!("{port:?} is not a port number (0-65535); expected HOST:PORT, e.g. {example}"))?;
    Ok((host, port))
}

/// `--listen` / `--repl-listen`: `HOST:PORT`, port 0 allowed.
pub fn listen(input: &str) -> Result<String, String> {
    host_port(input, "a listen address", "127.0.0.1:7700").map(|_| input.to_string())
}

/// `--dx-listen`: `HOST:PORT` or `off`.
pub fn dx_listen(input: &str) -> Result<String, String> {
    if input == "off" {
        return Ok(input.to_string());
    }
    host_port(input, "--dx-listen", "127.0.0.1:7702, or off").map(|_| input.to_string())
}

/// `--primary`: the primary's replication address, `HOST:PORT` with a port
/// a primary can listen on (never 0).
pub fn primary(input: &str) -> Result<String, String> {
    let example = "primary-host:7701 (the primary's --repl-listen port, default 7701)";
    let (_, port) = host_port(input, "--primary", example)?;
    if port == 0 {
        return Err(format!("port 0 is not a port a primary listens on; expected e.g. {example}"));
    }
    Ok(input.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// P5-I14: malformed addresses are refused with an example before anything runs.
    #[test]
    fn p5_i14_address_flags_are_checked_at_parse_time() {
        for ok in ["127.0.0.1:0", "0.0.0.0:7700", "localhost:7700", "[::1]:7702", "node-1.example:80"] {
            assert_eq!(listen(ok).as_deref(), Ok(ok));
        }
        assert_eq!(dx_listen("off").as_deref(), Ok("off"));
        for (bad, want) in [
            ("nonsense", "needs a port"),
            ("localhost", "needs a port"),
            ("http://h:1", "not a URL"),
            ("h:99999", "not a port number"),
            (":7700", "not a host name"),
            ("a b:1", "not a host name"),
            ("::1:7700", "brackets"),
            ("[zz]:1", "not an IPv6"),
        ] {
            let e = listen(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let e = primary("localhost").unwrap_err();
        assert!(e.contains("needs a port") && e.contains("7701"), "{e}");
        assert!(primary("localhost:0").unwrap_err().contains("port 0"));
        assert_eq!(primary("primary:7701").as_deref(), Ok("primary:7701"));
    }
}
