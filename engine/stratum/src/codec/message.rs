//! Messages from the pool to miners, written straight into an output buffer as JSON lines.
//!
//! Writers append to a `Vec<u8>` the connection already owns, so a reply costs no allocation once the
//! buffer has grown to its working size. Every message ends with `\n`.

use std::io::Write;
use std::sync::Arc;

use sluice_core::chain::job::{FrontEnd, Job};

use crate::codec::error::StratumError;
use crate::codec::request::Id;
use sluice_core::hex;
use sluice_core::units::{Difficulty, Extranonce1, JobId, VersionMask};

/// The fields of a `mining.notify`.
pub struct NotifyFields<'a> {
    pub job_id: JobId,
    /// In header byte order; written in Stratum's order (each 4-byte word byte-swapped).
    pub prev_hash: &'a [u8; 32],
    pub coinb1: &'a [u8],
    pub coinb2: &'a [u8],
    pub merkle_branch: &'a [[u8; 32]],
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean: bool,
}

/// The previous-block hash as Stratum sends it: the header bytes with each 32-bit word reversed.
pub fn stratum_prev_hash(prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut out = *prev_hash;
    for word in out.chunks_exact_mut(4) {
        word.reverse();
    }
    out
}

fn quoted_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    hex::encode_into(bytes, out);
    out.push(b'"');
}

fn quoted_u32(out: &mut Vec<u8>, v: u32) {
    quoted_hex(out, &v.to_be_bytes());
}

/// The `mining.notify` line for `job`, newline included: encoded once per job, then shared by every
/// session on every core.
pub fn notify_line(job: &Job) -> &Arc<[u8]> {
    job.encoded(FrontEnd::StratumV1, |job| {
        let mut line = Vec::with_capacity(
            160 + 2 * (job.coinb1.len() + job.coinb2.len()) + 67 * job.merkle_branch.len(),
        );
        write_notify(
            &mut line,
            &NotifyFields {
                job_id: job.id,
                prev_hash: &job.prev_hash,
                coinb1: &job.coinb1,
                coinb2: &job.coinb2,
                merkle_branch: &job.merkle_branch,
                version: job.version,
                nbits: job.nbits,
                ntime: job.ntime,
                clean: job.clean,
            },
        );
        line
    })
}

pub fn write_notify(out: &mut Vec<u8>, n: &NotifyFields<'_>) {
    write!(
        out,
        r#"{{"id":null,"method":"mining.notify","params":["{}","#,
        n.job_id
    )
    .expect("Vec write");
    quoted_hex(out, &stratum_prev_hash(n.prev_hash));
    out.push(b',');
    quoted_hex(out, n.coinb1);
    out.push(b',');
    quoted_hex(out, n.coinb2);
    out.extend_from_slice(b",[");
    for (i, node) in n.merkle_branch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quoted_hex(out, node);
    }
    out.extend_from_slice(b"],");
    quoted_u32(out, n.version);
    out.push(b',');
    quoted_u32(out, n.nbits);
    out.push(b',');
    quoted_u32(out, n.ntime);
    out.extend_from_slice(if n.clean { b",true]}\n" } else { b",false]}\n" });
}

/// `{"id":…,"result":<result>,"error":null}` with `result` already JSON.
pub fn write_result(out: &mut Vec<u8>, id: Id<'_>, result_json: &str) {
    write!(
        out,
        r#"{{"id":{},"result":{},"error":null}}"#,
        id.json(),
        result_json
    )
    .expect("Vec write");
    out.push(b'\n');
}

pub fn write_true(out: &mut Vec<u8>, id: Id<'_>) {
    write_result(out, id, "true");
}

pub fn write_error(out: &mut Vec<u8>, id: Id<'_>, error: StratumError) {
    // Messages are static ASCII without quotes or backslashes; assert it rather than escape.
    debug_assert!(!error.message.contains(['"', '\\']));
    write!(
        out,
        r#"{{"id":{},"result":null,"error":[{},"{}",null]}}"#,
        id.json(),
        error.code as u8,
        error.message
    )
    .expect("Vec write");
    out.push(b'\n');
}

/// The error answer, with the same id, to the request a [`write_true`] line answered: for a `true`
/// that was held and must be taken back. False (nothing written) when `true_line` is not one.
pub fn write_error_for_true(out: &mut Vec<u8>, true_line: &[u8], error: StratumError) -> bool {
    let id = true_line
        .strip_prefix(br#"{"id":"#)
        .and_then(|rest| rest.strip_suffix(b",\"result\":true,\"error\":null}\n"))
        .and_then(|id| std::str::from_utf8(id).ok());
    match id {
        Some(id) => {
            write_error(out, Id::from_written(id), error);
            true
        }
        None => false,
    }
}

/// The answer to `mining.subscribe`: subscriptions, extranonce1 and the extranonce2 size.
pub fn write_subscribe_result(
    out: &mut Vec<u8>,
    id: Id<'_>,
    session_id: &str,
    extranonce1: &Extranonce1,
    extranonce2_size: usize,
) {
    debug_assert!(session_id.bytes().all(|b| b.is_ascii_alphanumeric()));
    write!(
        out,
        r#"{{"id":{},"result":[[["mining.set_difficulty","{sid}"],["mining.notify","{sid}"]],"{}",{}],"error":null}}"#,
        id.json(),
        extranonce1,
        extranonce2_size,
        sid = session_id,
    )
    .expect("Vec write");
    out.push(b'\n');
}

/// The answer to `mining.configure`: `version_mask` is `Some` when version rolling was asked for
/// (with the granted mask, or `None` inside when refused); `minimum_difficulty` likewise.
pub fn write_configure_result(
    out: &mut Vec<u8>,
    id: Id<'_>,
    version_rolling: Option<Option<VersionMask>>,
    minimum_difficulty: Option<bool>,
    unknown: &[String],
) {
    let mut result = serde_json::Map::new();
    match version_rolling {
        Some(Some(mask)) => {
            result.insert("version-rolling".into(), true.into());
            result.insert("version-rolling.mask".into(), mask.to_string().into());
        }
        Some(None) => {
            result.insert("version-rolling".into(), false.into());
        }
        None => {}
    }
    if let Some(accepted) = minimum_difficulty {
        result.insert("minimum-difficulty".into(), accepted.into());
    }
    // An unknown name never overwrites an answer already given (a miner listing
    // "version-rolling.mask" as an extension must still get the mask).
    for name in unknown {
        result.entry(name.clone()).or_insert(false.into());
    }
    write_result(out, id, &serde_json::Value::Object(result).to_string());
}

pub fn write_set_difficulty(out: &mut Vec<u8>, difficulty: Difficulty) {
    write!(
        out,
        r#"{{"id":null,"method":"mining.set_difficulty","params":[{difficulty}]}}"#
    )
    .expect("Vec write");
    out.push(b'\n');
}

pub fn write_set_extranonce(out: &mut Vec<u8>, extranonce1: &Extranonce1, extranonce2_size: usize) {
    write!(
        out,
        r#"{{"id":null,"method":"mining.set_extranonce","params":["{extranonce1}",{extranonce2_size}]}}"#
    )
    .expect("Vec write");
    out.push(b'\n');
}

pub fn write_set_version_mask(out: &mut Vec<u8>, mask: VersionMask) {
    write!(
        out,
        r#"{{"id":null,"method":"mining.set_version_mask","params":["{mask}"]}}"#
    )
    .expect("Vec write");
    out.push(b'\n');
}

/// `client.reconnect`: with no host the miner reconnects to where it is.
pub fn write_reconnect(out: &mut Vec<u8>, target: Option<(&str, u16)>, wait_seconds: u32) {
    match target {
        Some((host, port)) => {
            let host = serde_json::Value::String(host.to_owned());
            write!(out, r#"{{"id":null,"method":"client.reconnect","params":[{host},{port},{wait_seconds}]}}"#)
        }
        None => write!(out, r#"{{"id":null,"method":"client.reconnect","params":[]}}"#),
    }
    .expect("Vec write");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::error::ErrorCode;
    use crate::codec::request::parse;
    use serde_json::{json, Value};

    fn as_json(buf: &[u8]) -> Value {
        assert_eq!(buf.last(), Some(&b'\n'));
        serde_json::from_slice(buf).unwrap()
    }

    #[test]
    fn a_true_taken_back_becomes_an_error_with_the_same_id() {
        let error = StratumError::new(ErrorCode::Other, "share not recorded, try again");
        for id in [r#""a\"b""#, "7", "null"] {
            let line =
                format!(r#"{{"id":{id},"method":"mining.extranonce.subscribe","params":[]}}"#);
            let id = parse(line.as_bytes()).unwrap().id;
            let mut reply = Vec::new();
            write_true(&mut reply, id);
            let mut out = Vec::new();
            assert!(write_error_for_true(&mut out, &reply, error));
            let mut expected = Vec::new();
            write_error(&mut expected, id, error);
            assert_eq!(out, expected);
        }
        let mut out = Vec::new();
        assert!(!write_error_for_true(
            &mut out,
            b"{\"id\":1,\"result\":false}\n",
            error
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn replies_echo_the_id_exactly() {
        let m =
            parse(br#"{"id":"a-1","method":"mining.extranonce.subscribe","params":[]}"#).unwrap();
        let mut out = Vec::new();
        write_true(&mut out, m.id);
        assert_eq!(
            as_json(&out),
            json!({"id":"a-1","result":true,"error":null})
        );
        out.clear();
        write_error(
            &mut out,
            m.id,
            StratumError::new(ErrorCode::Duplicate, "Duplicate share"),
        );
        assert_eq!(
            as_json(&out),
            json!({"id":"a-1","result":null,"error":[22,"Duplicate share",null]})
        );
    }

    #[test]
    fn notify_has_stratum_field_order() {
        let prev: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut out = Vec::new();
        write_notify(
            &mut out,
            &NotifyFields {
                job_id: JobId(0x1f),
                prev_hash: &prev,
                coinb1: &[1, 2],
                coinb2: &[3],
                merkle_branch: &[[0xab; 32]],
                version: 0x2000_0000,
                nbits: 0x1d00_ffff,
                ntime: 0x5f5e_1000,
                clean: true,
            },
        );
        let v = as_json(&out);
        assert_eq!(v["method"], "mining.notify");
        let p = v["params"].as_array().unwrap();
        assert_eq!(p[0], "1f");
        assert!(p[1].as_str().unwrap().starts_with("0302010007060504"));
        assert_eq!(p[2], "0102");
        assert_eq!(p[3], "03");
        assert_eq!(p[4][0], "ab".repeat(32));
        assert_eq!(
            (&p[5], &p[6], &p[7], &p[8]),
            (
                &json!("20000000"),
                &json!("1d00ffff"),
                &json!("5f5e1000"),
                &json!(true)
            )
        );
    }

    #[test]
    fn notifications() {
        let mut out = Vec::new();
        write_set_difficulty(&mut out, Difficulty::new(0.125).unwrap());
        assert_eq!(as_json(&out)["params"], json!([0.125]));
        out.clear();
        let en1 = Extranonce1::new(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
        write_set_extranonce(&mut out, &en1, 4);
        assert_eq!(as_json(&out)["params"], json!(["deadbeef", 4]));
        out.clear();
        write_subscribe_result(&mut out, Id::NULL, "abc123", &en1, 8);
        assert_eq!(as_json(&out)["result"][1], "deadbeef");
        assert_eq!(as_json(&out)["result"][2], 8);
        out.clear();
        write_reconnect(&mut out, Some(("pool.example\"", 3333)), 5);
        assert_eq!(as_json(&out)["params"], json!(["pool.example\"", 3333, 5]));
        out.clear();
        write_configure_result(
            &mut out,
            Id::NULL,
            Some(Some(VersionMask(0x1fffe000))),
            Some(false),
            &["x".into()],
        );
        assert_eq!(
            as_json(&out)["result"],
            json!({"version-rolling": true, "version-rolling.mask": "1fffe000", "minimum-difficulty": false, "x": false})
        );
    }
}
