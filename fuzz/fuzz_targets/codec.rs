//! The Stratum codec: bytes from a miner, in arbitrary chunks, through `LineFramer`, `stratum::parse`
//! and the reply writers.
//!
//! Input: byte 0 gives the number of chunk boundaries (low 3 bits), byte 1 a tiny line limit; then one
//! byte per boundary (its position, scaled to the body); the rest is the body, the bytes a miner sent.
//!
//! Checks:
//! - framing, for line limits 512, the default and a tiny one: every line is non-empty, trimmed, within
//!   the limit and free of `\n`; after an error every call gives the same error; what is buffered after
//!   a drain is within the limit; pushing the body in chunks yields a prefix of what pushing it whole
//!   yields, and fails whenever the whole push fails (the `strict` feature asserts full equality);
//! - every line (and the unterminated tail) goes through `parse`; every `Ok` message is answered with
//!   the writers and every error with `write_error`, and each reply must be one line of valid JSON
//!   whose `"id"` is the request's id byte for byte (and the same JSON value);
//! - a `mining.configure` reply answers every extension asked for, and an unknown extension name
//!   never overwrites an answer (such as the granted mask);
//! - a parsed request written back as a canonical JSON-RPC line parses to the same request;
//! - `parse_job_id` agrees with `u64::from_str_radix` on hex job ids, and a suggested difficulty's
//!   target stands for that difficulty and has an exact, rounded-down compact form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use sluice_core::share::{parse_job_id, Reject};
use sluice_core::units::{Difficulty, Extranonce1};
use sluice_fuzz::{check_notification, check_reply, close};
use sluice_stratum::codec::message::{
    write_configure_result, write_error, write_reconnect, write_set_difficulty,
    write_set_extranonce, write_set_version_mask, write_subscribe_result, write_true,
};
use sluice_stratum::codec::request::ParseErrorKind;
use sluice_stratum::codec::{
    parse, ErrorCode, FrameError, LineFramer, Message, Request, StratumError,
    DEFAULT_MAX_LINE_LENGTH,
};
use sluice_stratum::share::RejectAnswer;

/// The version bits this pool lets miners roll (BIP320's general-purpose range).
const POOL_VERSION_MASK: u32 = 0x1fff_e000;

type Lines = Vec<Result<Vec<u8>, FrameError>>;

/// Drains the framer: lines until `None` or the first error.
fn drain(framer: &mut LineFramer, max_line: usize, out: &mut Lines) -> bool {
    while let Some(line) = framer.next_line() {
        match line {
            Ok(line) => {
                assert!(!line.is_empty(), "blank lines are skipped");
                assert!(line.len() <= max_line, "line over the limit handed out");
                assert!(!line.contains(&b'\n'), "a line holds no newline");
                assert!(
                    !line[0].is_ascii_whitespace() && !line[line.len() - 1].is_ascii_whitespace(),
                    "lines are trimmed"
                );
                out.push(Ok(line.to_vec()));
            }
            Err(e) => {
                assert_eq!(e, FrameError::LineTooLong { limit: max_line });
                // Sticky: the same error again, and pushing more changes nothing.
                assert_eq!(framer.next_line(), Some(Err(e)));
                framer.push(b"{}\n");
                assert_eq!(framer.next_line(), Some(Err(e)));
                out.push(Err(e));
                return false;
            }
        }
    }
    assert!(
        framer.buffered() <= max_line,
        "after a drain at most one partial line within the limit is held"
    );
    true
}

fn frame(body: &[u8], cuts: &[usize], max_line: usize) -> (Lines, Lines) {
    let mut whole = Vec::new();
    let mut f = LineFramer::new(max_line);
    f.push(body);
    drain(&mut f, max_line, &mut whole);

    let mut chunked = Vec::new();
    let mut f = LineFramer::new(max_line);
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&body.len())) {
        f.push(&body[start..end]);
        start = end;
        if !drain(&mut f, max_line, &mut chunked) {
            break;
        }
    }

    if cfg!(feature = "strict") {
        assert_eq!(chunked, whole, "framing must not depend on chunking");
    } else {
        // A chunk that ends inside a line is measured before its line ending and surrounding
        // whitespace arrive, so chunked framing may fail earlier, but never later or differently.
        let oks = |ls: &Lines| ls.iter().take_while(|l| l.is_ok()).count();
        let (c, w) = (oks(&chunked), oks(&whole));
        assert!(c <= w, "chunked framing yielded more lines");
        assert_eq!(
            chunked[..c],
            whole[..c],
            "chunked framing yielded other lines"
        );
        if whole.len() > w {
            assert!(chunked.len() > c, "whole push failed but chunked did not");
        }
        if chunked.len() == c {
            assert_eq!(chunked, whole, "without an error, chunking changes nothing");
        }
    }
    (whole, chunked)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

fn opt_json_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

/// The request written back as a canonical JSON-RPC line.
fn canonical(msg: &Message<'_>) -> String {
    let (method, params) = match &msg.request {
        Request::Configure(c) => {
            let mut names = Vec::new();
            let mut options = serde_json::Map::new();
            if let Some(vr) = c.version_rolling {
                names.push(Value::from("version-rolling"));
                options.insert(
                    "version-rolling.mask".into(),
                    format!("{:08x}", vr.mask).into(),
                );
                options.insert(
                    "version-rolling.min-bit-count".into(),
                    vr.min_bit_count.into(),
                );
            }
            if let Some(d) = c.minimum_difficulty {
                names.push(Value::from("minimum-difficulty"));
                options.insert("minimum-difficulty.value".into(), d.into());
            }
            names.extend(c.unknown.iter().map(|n| Value::from(n.as_str())));
            (
                "mining.configure".to_owned(),
                Value::Array(vec![Value::Array(names), Value::Object(options)]).to_string(),
            )
        }
        Request::Subscribe {
            user_agent,
            session_id,
        } => (
            "mining.subscribe".to_owned(),
            format!(
                "[{},{}]",
                opt_json_str(user_agent.as_deref()),
                opt_json_str(session_id.as_deref())
            ),
        ),
        Request::Authorize { worker, password } => (
            "mining.authorize".to_owned(),
            format!(
                "[{},{}]",
                json_str(worker),
                opt_json_str(password.as_deref())
            ),
        ),
        Request::Submit(s) => {
            let mut p = vec![
                json_str(&s.worker),
                json_str(s.job_id),
                json_str(s.extranonce2),
                json_str(s.ntime),
                json_str(s.nonce),
            ];
            if let Some(v) = s.version_bits {
                p.push(json_str(v));
            }
            ("mining.submit".to_owned(), format!("[{}]", p.join(",")))
        }
        // Rust's f64 Display round-trips exactly through `str::parse`, NaN and infinities included.
        Request::SuggestDifficulty(d) => (
            "mining.suggest_difficulty".to_owned(),
            format!("[{}]", json_str(&d.to_string())),
        ),
        Request::ExtranonceSubscribe => ("mining.extranonce.subscribe".to_owned(), "[]".into()),
        Request::Unknown(m) => (m.to_string(), "[]".into()),
    };
    format!(
        r#"{{"id":{},"method":{},"params":{}}}"#,
        msg.id.json(),
        json_str(&method),
        params
    )
}

fn same_request(a: &Request<'_>, b: &Request<'_>) -> bool {
    match (a, b) {
        (Request::SuggestDifficulty(x), Request::SuggestDifficulty(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Request::Configure(x), Request::Configure(y)) => {
            x.version_rolling == y.version_rolling
                && x.unknown == y.unknown
                && match (x.minimum_difficulty, y.minimum_difficulty) {
                    (Some(p), Some(q)) => close(p, q),
                    (p, q) => p == q,
                }
        }
        _ => a == b,
    }
}

fn answer(msg: &Message<'_>, line: &[u8], out: &mut Vec<u8>) {
    let id = msg.id;
    let id_json = id.json();
    assert!(
        matches!(id_json.as_bytes()[0], b'"' | b'-' | b'0'..=b'9') || id_json == "null",
        "an id is a number, a string or null: {id_json}"
    );
    let en1 = Extranonce1::new(&[0xde, 0xad, 0xbe, 0xef]).expect("4 bytes");
    let mut reply = |write: &dyn Fn(&mut Vec<u8>)| {
        out.clear();
        write(out);
        check_reply(out, id_json)
    };
    match &msg.request {
        Request::Configure(c) => {
            let granted = c.version_rolling.map(|vr| {
                let mask = vr.mask & POOL_VERSION_MASK;
                (mask.count_ones() >= vr.min_bit_count).then_some(mask)
            });
            let min_diff = c
                .minimum_difficulty
                .map(|d| Difficulty::new(d).is_ok() && d <= 1e12);
            if let Some(v) = reply(&|o| {
                write_configure_result(
                    o,
                    id,
                    granted.map(|g| g.map(sluice_core::units::VersionMask)),
                    min_diff,
                    &c.unknown,
                );
            }) {
                let result = &v["result"];
                assert!(result.is_object(), "configure result is an object");
                assert_eq!(v["error"], Value::Null);
                // The answers; an unknown extension name never overwrites one of them.
                let mut answered: Vec<&str> = Vec::new();
                if let Some(g) = granted {
                    answered.push("version-rolling");
                    assert_eq!(result["version-rolling"], Value::Bool(g.is_some()));
                    if let Some(mask) = g {
                        answered.push("version-rolling.mask");
                        assert_eq!(
                            result["version-rolling.mask"],
                            Value::from(format!("{mask:08x}")),
                            "granted mask"
                        );
                    }
                }
                if min_diff.is_some() {
                    answered.push("minimum-difficulty");
                }
                for name in &c.unknown {
                    assert!(name != "version-rolling" && name != "minimum-difficulty");
                    if !answered.contains(&name.as_str()) {
                        assert_eq!(result[name.as_str()], Value::Bool(false), "unknown {name}");
                    }
                }
                if let Some(ok) = min_diff {
                    assert_eq!(result["minimum-difficulty"], Value::Bool(ok));
                }
            }
            if let Some(Some(mask)) = granted {
                out.clear();
                write_set_version_mask(out, sluice_core::units::VersionMask(mask));
                let v = check_notification(out, "mining.set_version_mask");
                assert_eq!(v["params"][0], Value::from(format!("{mask:08x}")));
            }
        }
        Request::Subscribe { .. } => {
            if let Some(v) = reply(&|o| write_subscribe_result(o, id, "0badc0de", &en1, 8)) {
                assert_eq!(v["result"][1], "deadbeef");
                assert_eq!(v["result"][2], 8);
            }
            out.clear();
            write_set_difficulty(out, Difficulty::new(0.125).expect("positive"));
            check_notification(out, "mining.set_difficulty");
        }
        Request::Authorize { worker, .. } => {
            if worker.is_empty() {
                reply(&|o| {
                    write_error(
                        o,
                        id,
                        StratumError::new(ErrorCode::Unauthorized, "Unauthorized worker"),
                    )
                });
            } else {
                reply(&|o| write_true(o, id));
            }
        }
        Request::Submit(s) => {
            // Job ids: parse_job_id is exactly hex of 1 to 16 digits.
            let expected = (!s.job_id.is_empty()
                && s.job_id.len() <= 16
                && s.job_id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s.job_id, 16).expect("hex"));
            let parsed = parse_job_id(s.job_id);
            assert_eq!(parsed.map(|j| j.0), expected, "job id {:?}", s.job_id);
            if let Some(j) = parsed {
                assert_eq!(parse_job_id(&j.to_string()), Some(j), "JobId display");
            }
            reply(&|o| write_true(o, id));
            let reject = Reject::ALL[line.len() % Reject::ALL.len()];
            if let Some(v) = reply(&|o| write_error(o, id, reject.stratum_error())) {
                let e = reject.stratum_error();
                assert_eq!(v["result"], Value::Null);
                assert_eq!(v["error"][0], e.code as u8);
                assert_eq!(v["error"][1], e.message);
                assert_eq!(v["error"][2], Value::Null);
            }
        }
        Request::SuggestDifficulty(d) => match Difficulty::new(*d) {
            Ok(diff) => {
                sluice_fuzz::check_to_compact(diff.target());
                reply(&|o| write_true(o, id));
                out.clear();
                write_set_difficulty(out, diff);
                let v = check_notification(out, "mining.set_difficulty");
                let written = v["params"][0].as_f64().expect("difficulty is a number");
                assert!(close(written, *d), "difficulty {d} written as {written}");
                if (1e-9..=1e15).contains(d) {
                    let back = diff.target().difficulty();
                    assert!(
                        (back / d - 1.0).abs() < 1e-9,
                        "difficulty {d} gave a target of difficulty {back}"
                    );
                }
            }
            Err(_) => {
                reply(&|o| {
                    write_error(
                        o,
                        id,
                        StratumError::new(ErrorCode::Other, "Invalid difficulty"),
                    )
                });
            }
        },
        Request::ExtranonceSubscribe => {
            reply(&|o| write_true(o, id));
            out.clear();
            write_set_extranonce(out, &en1, 8);
            let v = check_notification(out, "mining.set_extranonce");
            assert_eq!(v["params"], serde_json::json!(["deadbeef", 8]));
        }
        Request::Unknown(method) => {
            reply(&|o| {
                write_error(
                    o,
                    id,
                    StratumError::new(ErrorCode::Other, "Method not found"),
                )
            });
            // Any text as a reconnect host must still make one line of JSON.
            out.clear();
            write_reconnect(out, Some((method, 3333)), 5);
            let v = check_notification(out, "client.reconnect");
            assert_eq!(v["params"][0], Value::from(method.as_ref()));
        }
    }
}

fn check_line(line: &[u8], out: &mut Vec<u8>) {
    match parse(line) {
        Ok(msg) => {
            answer(&msg, line, out);
            let again = canonical(&msg);
            match parse(again.as_bytes()) {
                Ok(m2) => {
                    assert_eq!(m2.id, msg.id, "canonical line keeps the id");
                    assert!(
                        same_request(&m2.request, &msg.request),
                        "canonical line {again} parsed to {:?}, not {:?}",
                        m2.request,
                        msg.request
                    );
                }
                Err(e) => panic!("canonical line {again} does not parse: {e:?}"),
            }
        }
        Err(e) => {
            if matches!(e.kind, ParseErrorKind::NotJsonRpc | ParseErrorKind::BadId) {
                assert_eq!(e.id.json(), "null", "no id is kept for {:?}", e.kind);
            }
            out.clear();
            write_error(out, e.id, e.kind.stratum_error());
            let v = check_reply(out, e.id.json());
            if let Some(v) = v {
                assert_eq!(v["result"], Value::Null);
                assert_eq!(v["error"][0], e.kind.stratum_error().code as u8);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n_cuts = usize::from(data[0] & 7);
    let tiny = 1 + usize::from(data[1] % 48);
    let head = (2 + n_cuts).min(data.len());
    let body = &data[head..];
    let mut cuts: Vec<usize> = data[2..head]
        .iter()
        .map(|&b| usize::from(b) * body.len() / 256)
        .collect();
    cuts.sort_unstable();

    let mut lines = Vec::new();
    for max_line in [tiny, 512, DEFAULT_MAX_LINE_LENGTH] {
        let (whole, _) = frame(body, &cuts, max_line);
        lines = whole;
    }

    // The default framer's lines include every line the smaller limits let through.
    let mut out = Vec::with_capacity(512);
    for line in lines.iter().filter_map(|l| l.as_ref().ok()) {
        check_line(line, &mut out);
    }
    // The unterminated tail, as a server would read it when the connection closes.
    let tail_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let tail = body[tail_start..].trim_ascii();
    if !tail.is_empty() && tail.len() <= DEFAULT_MAX_LINE_LENGTH {
        check_line(tail, &mut out);
    }
});
