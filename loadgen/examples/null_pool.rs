//! A do-nothing Stratum V1 responder, to measure the floor under `sluice-loadgen`: it answers the
//! handshake, sends one job, and answers every other request `true` at once, without hashing.
//! Plain tokio (epoll), current-thread runtime: one core, like one engine thread.
//!
//! `cargo run --release -p sluice-loadgen --example null_pool -- 127.0.0.1:0` prints
//! `null-pool ready stratum=ADDR`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn id_of(line: &[u8]) -> &[u8] {
    // The id as sent (the generator writes `{"id":N,...`): echo its text.
    let Some(start) = line.windows(5).position(|w| w == b"\"id\":") else {
        return b"null";
    };
    let rest = &line[start + 5..];
    let end = rest
        .iter()
        .position(|&b| b == b',' || b == b'}')
        .unwrap_or(rest.len());
    &rest[..end]
}

async fn serve(mut stream: TcpStream, extranonce1: u32) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let ntime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + nl];
            let id = id_of(line);
            if line.windows(16).any(|w| w == b"mining.subscribe") {
                let _ = writeln!(
                    out,
                    "{{\"id\":{},\"result\":[[[\"mining.notify\",\"1\"]],\"{extranonce1:08x}\",8],\"error\":null}}",
                    String::from_utf8_lossy(id)
                );
            } else if line.windows(16).any(|w| w == b"mining.authorize") {
                let _ = write!(
                    out,
                    "{{\"id\":{},\"result\":true,\"error\":null}}\n\
                     {{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[1e-9]}}\n\
                     {{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"1\",\"{}\",\"{}\",\"{}\",[],\"20000000\",\"207fffff\",\"{ntime:08x}\",true]}}\n",
                    String::from_utf8_lossy(id),
                    "00".repeat(32),
                    "01".repeat(60),
                    "ff".repeat(12),
                );
            } else if line.windows(16).any(|w| w == b"mining.configure") {
                let _ = writeln!(
                    out,
                    "{{\"id\":{},\"result\":{{\"version-rolling\":true,\"version-rolling.mask\":\"1fffe000\"}},\"error\":null}}",
                    String::from_utf8_lossy(id)
                );
            } else {
                let _ = writeln!(
                    out,
                    "{{\"id\":{},\"result\":true,\"error\":null}}",
                    String::from_utf8_lossy(id)
                );
            }
            start += nl + 1;
        }
        pending.drain(..start);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!(
            "null-pool ready stratum={}",
            listener.local_addr().expect("bound")
        );
        let mut next = 0u32;
        loop {
            if let Ok((s, _)) = listener.accept().await {
                next = next.wrapping_add(1);
                tokio::spawn(serve(s, next));
            }
        }
    });
}
