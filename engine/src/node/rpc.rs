//! JSON-RPC over HTTP/1.1 to a bitcoind-compatible node: the transport under every node call.
//!
//! Blocking and small on purpose: it runs on the jobmanager's own threads, never on an engine core.
//! One kept-alive connection per client, re-opened once when the node has closed it while idle;
//! a timeout on connecting, writing and reading; Basic authentication from a user and password or
//! from the node's cookie file (read for every call, since the node rewrites it on restart; it is a
//! few dozen bytes).
//! Responses are bounded by [`MAX_RESPONSE_BYTES`]. Errors are classified so the caller can tell
//! "the node is gone" ([`RpcError::is_no_answer`]) from "the node answered no".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest response body accepted: a template of a large block with its transactions in hex.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// The longest status line or header line accepted.
const MAX_HEADER_LINE: usize = 8 * 1024;

/// Header lines accepted in one response.
const MAX_HEADER_LINES: usize = 100;

/// How the client proves itself to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    UserPassword {
        user: String,
        password: String,
    },
    /// bitcoind's `.cookie` file (`__cookie__:<random>`), read for every call.
    CookieFile(PathBuf),
}

/// Where a node's RPC listens and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, as given.
    pub host_port: String,
    /// The request path (`/` or `/wallet/<name>`).
    pub path: String,
    pub auth: Auth,
}

impl Endpoint {
    /// Parses `http://[user:password@]host:port[/path]`. Credentials in the URL win over `auth`.
    /// The user info ends at the last `@`, as in [`crate::redact::url`]: a password may hold `/` or
    /// `@`, and the parser and the redaction then agree on which bytes are the password.
    pub fn parse(url: &str, auth: Auth) -> Result<Endpoint, UrlError> {
        // Errors quote the URL back to the operator, never its password.
        let shown = || crate::redact::url(url);
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                UrlError::Https { url: shown() }
            } else {
                UrlError::NotHttp { url: shown() }
            }
        })?;
        let (userinfo, rest) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let has_port = host_port
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !has_port {
            return Err(UrlError::NoPort { url: shown() });
        }
        let auth = match userinfo {
            None => auth,
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                Auth::UserPassword {
                    user: user.to_owned(),
                    password: password.to_owned(),
                }
            }
        };
        Ok(Endpoint {
            host_port: host_port.to_owned(),
            path: path.to_owned(),
            auth,
        })
    }

    /// The URL without credentials, for logs and status pages.
    pub fn display(&self) -> String {
        format!(
            "http://{}{}",
            self.host_port,
            if self.path == "/" { "" } else { &self.path }
        )
    }
}

/// Why a node URL was refused. Each holds the URL with its password hidden, as the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?}: nodes speak plain HTTP on their RPC port; use http:// (put TLS in a tunnel if the node is remote)")]
    Https { url: String },
    #[error("{url:?} is not an http:// URL, e.g. http://127.0.0.1:8332")]
    NotHttp { url: String },
    #[error("{url:?} needs host:port, e.g. http://127.0.0.1:8332 (regtest: 18443)")]
    NoPort { url: String },
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer: {0}")]
    Io(String),
    #[error("the node refused the RPC credentials (HTTP 401)")]
    Unauthorized,
    #[error("cannot read the cookie file {path}: {reason}")]
    Cookie { path: String, reason: String },
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl RpcError {
    /// The node did not answer at all (down, unreachable, hung): worth a retry or a failover.
    pub fn is_no_answer(&self) -> bool {
        matches!(self, RpcError::Connect(_) | RpcError::Io(_))
    }
}

/// bitcoind's "still loading / warming up" RPC error: the node is there but not ready.
pub const RPC_IN_WARMUP: i64 = -28;

/// A JSON-RPC client of one node.
pub struct RpcClient {
    endpoint: Endpoint,
    timeout: Duration,
    connection: Option<BufReader<TcpStream>>,
    next_id: u64,
    /// Reused for every request body.
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl RpcClient {
    pub fn new(endpoint: Endpoint, timeout: Duration) -> RpcClient {
        RpcClient {
            endpoint,
            timeout,
            connection: None,
            next_id: 1,
            body: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn authorization(&self) -> Result<Option<String>, RpcError> {
        let credentials = match &self.endpoint.auth {
            Auth::None => return Ok(None),
            Auth::UserPassword { user, password } => format!("{user}:{password}"),
            Auth::CookieFile(path) => std::fs::read_to_string(path)
                .map_err(|e| RpcError::Cookie {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
                .trim()
                .to_owned(),
        };
        Ok(Some(format!("Basic {}", base64(credentials.as_bytes()))))
    }

    fn connect(&self) -> Result<BufReader<TcpStream>, RpcError> {
        let addrs = self
            .endpoint
            .host_port
            .to_socket_addrs()
            .map_err(|e| RpcError::Connect(format!("{}: {e}", self.endpoint.host_port)))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                        .map_err(|e| RpcError::Connect(e.to_string()))?;
                    return Ok(BufReader::with_capacity(64 * 1024, stream));
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(RpcError::Connect(last.unwrap_or_else(|| {
            format!("{} resolves to no address", self.endpoint.host_port)
        })))
    }

    /// Calls `method` and decodes its result as `T` (a JSON `null` result decodes as `T` from
    /// `null`, so `Option<_>` and `()`-like types work for calls such as `submitblock`).
    pub fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<T, RpcError> {
        let raw = self.call_raw(method, params)?;
        serde_json::from_slice(&raw)
            .map_err(|e| RpcError::Malformed(format!("{method} result: {e}")))
    }

    /// Calls `method` and returns the bytes of its `result` (JSON).
    pub fn call_raw(
        &mut self,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Vec<u8>, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        self.body.clear();
        serde_json::to_writer(
            &mut self.body,
            &serde_json::json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}),
        )
        .map_err(|e| RpcError::Malformed(e.to_string()))?;
        let authorization = self.authorization()?;

        // A kept-alive connection the node closed while idle fails on first use: open a new one
        // once. A fresh connection that fails is the node's answer.
        let reused = self.connection.is_some();
        let (status, body) = match self.exchange(authorization.as_deref()) {
            Err(e) if reused && e.is_no_answer() => {
                self.connection = None;
                self.exchange(authorization.as_deref())?
            }
            other => other?,
        };
        if status == 401 {
            return Err(RpcError::Unauthorized);
        }
        // bitcoind answers RPC errors with HTTP 500 (or 404 for an unknown method) and a JSON
        // body; read that body whatever the status.
        let response: Response = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(if status == 200 {
                    RpcError::Malformed(format!("not a JSON-RPC response: {text}"))
                } else {
                    RpcError::Http { status, body: text }
                });
            }
        };
        if let Some(e) = response.error {
            return Err(RpcError::Rpc {
                code: e.code,
                message: e.message,
            });
        }
        Ok(response
            .result
            .map_or_else(|| b"null".to_vec(), |r| r.get().as_bytes().to_vec()))
    }

    /// Sends the request in `self.body` and reads one response: (status, body).
    fn exchange(&mut self, authorization: Option<&str>) -> Result<(u16, Vec<u8>), RpcError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let result = self.exchange_on_connection(authorization);
        if result.is_err() {
            // Whatever happened, the stream may be mid-response: never reuse it.
            self.connection = None;
        }
        result
    }

    fn exchange_on_connection(
        &mut self,
        authorization: Option<&str>,
    ) -> Result<(u16, Vec<u8>), RpcError> {
        let io = |e: std::io::Error| RpcError::Io(e.to_string());
        let conn = self.connection.as_mut().expect("connected above");
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n",
            self.endpoint.path,
            self.endpoint.host_port,
            self.body.len()
        );
        if let Some(a) = authorization {
            head.push_str("Authorization: ");
            head.push_str(a);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let stream = conn.get_mut();
        // One segment for the request, so nothing waits on Nagle's algorithm.
        let mut request = head.into_bytes();
        request.extend_from_slice(&self.body);
        stream.write_all(&request).map_err(io)?;
        // bitcoind writes a large response in more than one segment with Nagle on; a delayed ACK
        // from us would hold its second segment back by 40 ms (measured: a template after a new
        // block took 42 ms instead of 0.5). Quick ACKs are per read on Linux, so ask every time.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&*stream).set_quickack(true);

        let mut line = Vec::new();
        read_line(conn, &mut line)?;
        if line.is_empty() {
            return Err(RpcError::Io("the node closed the connection".into()));
        }
        let status_line = String::from_utf8_lossy(&line).into_owned();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .filter(|_| status_line.starts_with("HTTP/1."))
            .ok_or_else(|| RpcError::Malformed(format!("status line {status_line:?}")))?;
        let mut content_length = None;
        let mut chunked = false;
        let mut close = status_line.starts_with("HTTP/1.0");
        for _ in 0..=MAX_HEADER_LINES {
            read_line(conn, &mut line)?;
            if line.is_empty() {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let Some((name, value)) = text.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length =
                        Some(value.parse::<usize>().map_err(|_| {
                            RpcError::Malformed(format!("Content-Length {value:?}"))
                        })?)
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => {
                    if value.eq_ignore_ascii_case("close") {
                        close = true
                    } else if value.eq_ignore_ascii_case("keep-alive") {
                        close = false
                    }
                }
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(conn)?
        } else if let Some(n) = content_length {
            if n > MAX_RESPONSE_BYTES {
                return Err(RpcError::Malformed(format!(
                    "a {n}-byte response is over the {MAX_RESPONSE_BYTES}-byte limit"
                )));
            }
            let mut body = vec![0; n];
            conn.read_exact(&mut body).map_err(io)?;
            body
        } else {
            close = true;
            let mut body = Vec::new();
            conn.take(MAX_RESPONSE_BYTES as u64 + 1)
                .read_to_end(&mut body)
                .map_err(io)?;
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(RpcError::Malformed("response over the size limit".into()));
            }
            body
        };
        if close {
            self.connection = None;
        }
        Ok((status, body))
    }
}

/// Reads one CRLF- or LF-terminated line (without its terminator) into `line`; empty at a blank
/// line. An end of stream before any byte also gives an empty line with no error only for the
/// status line's caller to notice.
fn read_line(conn: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> Result<(), RpcError> {
    line.clear();
    let n = conn
        .by_ref()
        .take(MAX_HEADER_LINE as u64)
        .read_until(b'\n', line)
        .map_err(|e| RpcError::Io(e.to_string()))?;
    if n > 0 && line.last() != Some(&b'\n') {
        return Err(if n >= MAX_HEADER_LINE {
            RpcError::Malformed("a header line over the limit".into())
        } else {
            RpcError::Io("the node closed the connection mid-response".into())
        });
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(())
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, RpcError> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        read_line(conn, &mut line)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| RpcError::Malformed(format!("chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                read_line(conn, &mut line)?;
                if line.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_RESPONSE_BYTES {
            return Err(RpcError::Malformed("response over the size limit".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])
            .map_err(|e| RpcError::Io(e.to_string()))?;
        read_line(conn, &mut line)?;
    }
}

/// A scripted HTTP peer for faults a real node cannot be made to show (a hung node, a garbled
/// answer, a node in initial block download).
#[cfg(test)]
pub(crate) mod scripted {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A scripted HTTP peer for transport edge cases the real node cannot be made to show.
    pub fn serve(responses: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for response in responses {
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap() == 0 {
                        return requests;
                    }
                    if let Some(v) = l.strip_prefix("Content-Length: ") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&l);
                    if l == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                requests.push(head + &String::from_utf8(body).unwrap());
                reader.get_mut().write_all(&response).unwrap();
            }
            requests
        });
        (addr, handle)
    }

    pub fn http(status: u16, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::scripted::{http, serve};
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn urls_parse_with_and_without_credentials() {
        let e = Endpoint::parse("http://u:p%@127.0.0.1:18443", Auth::None).unwrap();
        assert_eq!(e.host_port, "127.0.0.1:18443");
        assert_eq!(e.path, "/");
        assert_eq!(
            e.auth,
            Auth::UserPassword {
                user: "u".into(),
                password: "p%".into()
            }
        );
        assert_eq!(e.display(), "http://127.0.0.1:18443");
        let e = Endpoint::parse("http://node:8332/wallet/pool", Auth::None).unwrap();
        assert_eq!(e.path, "/wallet/pool");
        assert!(Endpoint::parse("https://node:8332", Auth::None)
            .unwrap_err()
            .to_string()
            .contains("plain HTTP"));
        assert!(Endpoint::parse("http://node", Auth::None)
            .unwrap_err()
            .to_string()
            .contains("host:port"));
        assert!(Endpoint::parse("node:8332", Auth::None)
            .unwrap_err()
            .to_string()
            .contains("http://"));
        // Errors quote the URL without its password.
        for bad in [
            "https://rpc:sekrit@node:8332",
            "rpc:sekrit@node:8332",
            "http://rpc:sekrit@node",
        ] {
            let e = Endpoint::parse(bad, Auth::None).unwrap_err().to_string();
            assert!(e.contains("rpc:***@node") && !e.contains("sekrit"), "{e}");
        }
    }

    #[test]
    fn a_password_may_hold_slashes_and_at_signs() {
        let url = "http://rpc:a/b@c/d@node:8332/wallet/pool";
        let e = Endpoint::parse(url, Auth::None).unwrap();
        assert_eq!(e.host_port, "node:8332");
        assert_eq!(e.path, "/wallet/pool");
        assert_eq!(
            e.auth,
            Auth::UserPassword {
                user: "rpc".into(),
                password: "a/b@c/d".into()
            }
        );
        // The redaction hides exactly what the parser takes for the password.
        assert_eq!(
            crate::redact::url(url),
            "http://rpc:***@node:8332/wallet/pool"
        );
        let e = Endpoint::parse("http://rpc:a/b@node", Auth::None).unwrap_err();
        assert_eq!(
            e,
            UrlError::NoPort {
                url: "http://rpc:***@node".into()
            }
        );
        assert!(!e.to_string().contains("a/b"), "{e}");
    }

    #[test]
    fn keeps_the_connection_alive_and_reads_chunked_and_error_bodies() {
        let second = r#"ult":null,"error":null,"id":2}"#;
        let (addr, peer) = serve(vec![
            http(200, r#"{"result":"00ff","error":null,"id":1}"#),
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"res\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
                second.len()
            )
            .into_bytes(),
            http(
                500,
                r#"{"result":null,"error":{"code":-10,"message":"still downloading"},"id":3}"#,
            ),
        ]);
        let endpoint = Endpoint::parse(&format!("http://user:pw@{addr}"), Auth::None).unwrap();
        let mut client = RpcClient::new(endpoint, Duration::from_secs(5));
        let hash: String = client
            .call("getbestblockhash", &serde_json::json!([]))
            .unwrap();
        assert_eq!(hash, "00ff");
        let result: Option<String> = client
            .call("submitblock", &serde_json::json!(["00"]))
            .unwrap();
        assert_eq!(result, None);
        let err = client
            .call::<serde_json::Value>("getblocktemplate", &serde_json::json!([]))
            .unwrap_err();
        assert_eq!(
            err,
            RpcError::Rpc {
                code: -10,
                message: "still downloading".into()
            }
        );
        let requests = peer.join().unwrap();
        assert_eq!(requests.len(), 3, "one connection served all three calls");
        assert!(requests[0].contains(&format!("Authorization: Basic {}", base64(b"user:pw"))));
        assert!(requests[1].contains("\"method\":\"submitblock\""));
    }

    #[test]
    fn the_cookie_file_is_read_for_every_call() {
        let dir = std::env::temp_dir().join(format!("sluice-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = dir.join(".cookie");
        std::fs::write(&cookie, "__cookie__:first\n").unwrap();
        let ok = || http(200, r#"{"result":"00","error":null,"id":1}"#);
        // The node closes the connection after each answer, as after a restart.
        let close = |mut r: Vec<u8>| {
            let at = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            r.splice(at..at, b"\r\nConnection: close".iter().copied());
            r
        };
        let (addr, peer) = serve(vec![close(ok())]);
        let endpoint =
            Endpoint::parse(&format!("http://{addr}"), Auth::CookieFile(cookie.clone())).unwrap();
        let mut client = RpcClient::new(endpoint, Duration::from_secs(5));
        client
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap();
        let first = peer.join().unwrap();
        assert!(first[0].contains(&format!(
            "Authorization: Basic {}",
            base64(b"__cookie__:first")
        )));

        // The node restarted and wrote a new cookie; the client was pointed at the new node.
        std::fs::write(&cookie, "__cookie__:second").unwrap();
        let (addr, peer) = serve(vec![ok()]);
        client.endpoint.host_port = addr;
        client
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap();
        let second = peer.join().unwrap();
        assert!(second[0].contains(&format!(
            "Authorization: Basic {}",
            base64(b"__cookie__:second")
        )));

        std::fs::remove_file(&cookie).unwrap();
        let err = client
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap_err();
        assert!(matches!(err, RpcError::Cookie { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn classifies_refusal_401_and_a_hung_node() {
        // Nothing listens on a port we bound and dropped.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}"), Auth::None).unwrap();
        let err = RpcClient::new(endpoint, Duration::from_secs(1))
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap_err();
        assert!(
            matches!(err, RpcError::Connect(_)) && err.is_no_answer(),
            "{err}"
        );

        let (addr, _peer) = serve(vec![http(401, "")]);
        let endpoint = Endpoint::parse(&format!("http://{addr}"), Auth::None).unwrap();
        let err = RpcClient::new(endpoint, Duration::from_secs(5))
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap_err();
        assert_eq!(err, RpcError::Unauthorized);

        // Accepts, reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(s)
        });
        let endpoint = Endpoint::parse(&format!("http://{addr}"), Auth::None).unwrap();
        let err = RpcClient::new(endpoint, Duration::from_millis(300))
            .call::<String>("getbestblockhash", &serde_json::json!([]))
            .unwrap_err();
        assert!(err.is_no_answer(), "{err}");
    }

    #[test]
    fn oversized_or_garbled_answers_are_errors() {
        let (addr, _peer) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n".to_vec(),
        ]);
        let endpoint = Endpoint::parse(&format!("http://{addr}"), Auth::None).unwrap();
        let err = RpcClient::new(endpoint, Duration::from_secs(5))
            .call::<String>("x", &serde_json::json!([]))
            .unwrap_err();
        assert!(matches!(err, RpcError::Malformed(_)), "{err}");
        let (addr, _peer) = serve(vec![b"SMTP ready\r\n\r\n".to_vec()]);
        let endpoint = Endpoint::parse(&format!("http://{addr}"), Auth::None).unwrap();
        let err = RpcClient::new(endpoint, Duration::from_secs(5))
            .call::<String>("x", &serde_json::json!([]))
            .unwrap_err();
        assert!(matches!(err, RpcError::Malformed(_)), "{err}");
    }
}
