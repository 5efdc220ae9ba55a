//! A test miner over real TCP: blocking, line by line, keeping the notifications it is sent, and
//! mining real shares with the `bitcoin` crate's hashing (independent of the engine's code).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use serde_json::{json, Value};

use super::{read_notify, reference_header, NotifiedWork};

pub const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig";

pub struct Miner {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
    /// Notifications not yet taken by the test.
    pub notifications: VecDeque<Value>,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    pub difficulty: f64,
    pub work: Option<NotifiedWork>,
    pub version_mask: u32,
    extranonce2: u64,
}

/// A share ready to submit.
#[derive(Debug, Clone)]
pub struct Share {
    pub job_id: String,
    pub extranonce2: String,
    pub ntime: String,
    pub nonce: String,
    pub version_bits: Option<String>,
    pub hash: bitcoin::BlockHash,
}

fn target_of(difficulty: f64) -> bitcoin::Target {
    bitcoin::Target::from_le_bytes(
        sluice::units::Difficulty::new(difficulty)
            .unwrap()
            .target()
            .to_le_bytes(),
    )
}

impl Miner {
    pub fn connect(addr: SocketAddr) -> Miner {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Connects from a chosen loopback source address (each 127.0.0.x is its own client IP).
    pub fn connect_from(addr: SocketAddr, source: &str) -> std::io::Result<Miner> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let src: SocketAddr = format!("{source}:0").parse().unwrap();
        socket.bind(&src.into())?;
        socket.connect(&addr.into())?;
        Ok(Self::from_stream(socket.into()))
    }

    pub fn from_stream(stream: TcpStream) -> Miner {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Miner {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
            notifications: VecDeque::new(),
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            difficulty: 0.0,
            work: None,
            version_mask: 0,
            extranonce2: 0,
        }
    }

    pub fn send_raw(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(line)
    }

    /// Reads one message, or `None` on timeout; `Err` when the connection is closed.
    pub fn read_message(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("closed".into()),
            Ok(_) => {
                let v: Value =
                    serde_json::from_str(&line).map_err(|e| format!("bad JSON {line:?}: {e}"))?;
                self.observe(&v);
                Ok(Some(v))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn observe(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("mining.set_difficulty") => self.difficulty = v["params"][0].as_f64().unwrap(),
            Some("mining.notify") => self.work = Some(read_notify(v.to_string().as_bytes())),
            _ => {}
        }
    }

    /// Whether the engine has closed the connection (reads until EOF, an error, or `timeout`).
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.read_message(Duration::from_millis(100)) {
                Err(_) => return true,
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => {}
            }
        }
        false
    }

    /// Sends a request and waits for its answer, keeping notifications that arrive meanwhile.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).unwrap();
        loop {
            match self.read_message(Duration::from_secs(10)) {
                Ok(Some(v)) if v["id"] == json!(id) => return v,
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => panic!("no answer to {method} within 10 s"),
                Err(e) => panic!("connection ended waiting for {method}: {e}"),
            }
        }
    }

    /// The next notification with this method.
    pub fn wait_for(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|v| v["method"] == method)
        {
            return self.notifications.remove(i);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.read_message(Duration::from_millis(100)) {
                Ok(Some(v)) if v["method"] == method => return Some(v),
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => {}
                Err(_) => return None,
            }
        }
        None
    }

    pub fn subscribe(&mut self) -> Value {
        let r = self.request("mining.subscribe", json!(["sluice-test-miner/1.0"]));
        let result = &r["result"];
        self.extranonce1 = bitcoin::hex::FromHex::from_hex(result[1].as_str().unwrap()).unwrap();
        self.extranonce2_size = result[2].as_u64().unwrap() as usize;
        r
    }

    pub fn configure_version_rolling(&mut self, mask: &str) -> Value {
        let r = self.request(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": mask, "version-rolling.min-bit-count": 2}]),
        );
        if let Some(m) = r["result"]["version-rolling.mask"].as_str() {
            self.version_mask = u32::from_str_radix(m, 16).unwrap();
        }
        r
    }

    pub fn authorize(&mut self, worker: &str, password: &str) -> Value {
        self.request("mining.authorize", json!([worker, password]))
    }

    /// Subscribe, authorize, and wait for the first job.
    pub fn handshake(&mut self) {
        self.subscribe();
        let r = self.authorize(WORKER, "x");
        assert_eq!(r["result"], true, "{r}");
        self.wait_for("mining.notify", Duration::from_secs(10))
            .expect("first job");
    }

    /// Finds a share on the current work whose hash meets (or, with `meets = false`, misses) the
    /// target of `difficulty`, with these version bits rolled.
    pub fn find_share(&mut self, difficulty: f64, meets: bool, version_bits: Option<u32>) -> Share {
        let work = self.work.as_ref().expect("work");
        self.extranonce2 += 1;
        let en2 = &self.extranonce2.to_be_bytes()[8 - self.extranonce2_size.min(8)..];
        let mut en2 = en2.to_vec();
        en2.resize(self.extranonce2_size, 0);
        let target = target_of(difficulty);
        let version = match version_bits {
            None => work.version,
            Some(bits) => (work.version & !self.version_mask) | (bits & self.version_mask),
        };
        for nonce in 0u32.. {
            let header =
                reference_header(work, &self.extranonce1, &en2, version, work.ntime, nonce);
            let hash = header.block_hash();
            if target.is_met_by(hash) == meets {
                return Share {
                    job_id: work.job_id.clone(),
                    extranonce2: bitcoin::hex::DisplayHex::to_lower_hex_string(&en2[..]),
                    ntime: format!("{:08x}", work.ntime),
                    nonce: format!("{nonce:08x}"),
                    version_bits: version_bits.map(|b| format!("{:08x}", b & self.version_mask)),
                    hash,
                };
            }
        }
        unreachable!()
    }

    /// Mines on the current work until a share is a block, submitting (and checking) the ones
    /// before it that are not; the block is returned unsubmitted.
    pub fn mine_until_block(&mut self) -> Share {
        loop {
            let share = self.find_share(self.difficulty, true, None);
            if self.is_block(&share) {
                return share;
            }
            assert_eq!(self.submit(&share)["result"], true);
        }
    }

    /// Whether a share's hash meets the current work's network target.
    pub fn is_block(&self, share: &Share) -> bool {
        let work = self.work.as_ref().unwrap();
        bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(work.nbits))
            .is_met_by(share.hash)
    }

    pub fn submit(&mut self, share: &Share) -> Value {
        self.submit_as(WORKER, share)
    }

    pub fn submit_as(&mut self, worker: &str, share: &Share) -> Value {
        let mut params = vec![
            json!(worker),
            json!(share.job_id),
            json!(share.extranonce2),
            json!(share.ntime),
            json!(share.nonce),
        ];
        if let Some(v) = &share.version_bits {
            params.push(json!(v));
        }
        self.request("mining.submit", Value::Array(params))
    }

    /// The hash of a share in the `BlockHash` display form the engine logs.
    pub fn hash_hex(share: &Share) -> String {
        share.hash.to_string()
    }

    pub fn hash_bytes(share: &Share) -> [u8; 32] {
        share.hash.to_byte_array()
    }
}

pub fn error_code(v: &Value) -> i64 {
    v["error"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
}
