//! Requests from miners: one JSON-RPC line into a typed [`Request`].
//!
//! Parsing borrows from the line: a `mining.submit` is parsed without allocating (strings with JSON
//! escapes are the one exception, and hex fields never have them). Ids may be numbers, strings or null
//! and are echoed back byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::codec::error::{ErrorCode, StratumError};

/// A request id, as the miner wrote it (a JSON number or string), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Id<'a>(Option<&'a str>);

impl<'a> Id<'a> {
    pub const NULL: Id<'static> = Id(None);

    /// The id's JSON text, `null` when there is none.
    pub fn json(&self) -> &'a str {
        self.0.unwrap_or("null")
    }

    /// An id as a reply wrote it (its JSON text, `null` for none).
    pub(crate) fn from_written(text: &'a str) -> Id<'a> {
        Id((text != "null").then_some(text))
    }

    pub fn to_owned(&self) -> OwnedId {
        OwnedId(self.0.map(Box::from))
    }
}

/// An id kept beyond the line it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedId(Option<Box<str>>);

impl OwnedId {
    pub fn as_id(&self) -> Id<'_> {
        Id(self.0.as_deref())
    }
}

/// A string borrowed from the line when it has no escapes, owned otherwise.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: CowStr<'a>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// `mining.submit`'s parameters, still as text; the share validator decodes them against the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit<'a> {
    pub worker: Cow<'a, str>,
    pub job_id: &'a str,
    pub extranonce2: &'a str,
    pub ntime: &'a str,
    pub nonce: &'a str,
    /// BIP310 version bits, present when the miner rolls the version.
    pub version_bits: Option<&'a str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Submit<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Submit<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of 5 or 6 strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = |n| de::Error::invalid_length(n, &"5 or 6 parameters");
                let worker: CowStr = seq.next_element()?.ok_or_else(|| missing(0))?;
                let job_id: &'de str = seq.next_element()?.ok_or_else(|| missing(1))?;
                let extranonce2: &'de str = seq.next_element()?.ok_or_else(|| missing(2))?;
                let ntime: &'de str = seq.next_element()?.ok_or_else(|| missing(3))?;
                let nonce: &'de str = seq.next_element()?.ok_or_else(|| missing(4))?;
                let version_bits: Option<&'de str> = seq.next_element()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(7, &"5 or 6 parameters"));
                }
                Ok(Submit {
                    worker: worker.0,
                    job_id,
                    extranonce2,
                    ntime,
                    nonce,
                    version_bits,
                })
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// `mining.configure`'s parameters (BIP310).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Configure {
    /// The version-rolling mask the miner asks for, when it asks for version rolling.
    pub version_rolling: Option<VersionRolling>,
    /// The minimum difficulty the miner asks for, when it asks.
    pub minimum_difficulty: Option<f64>,
    /// Extensions asked for that the pool does not know; each is answered `false`.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRolling {
    pub mask: u32,
    pub min_bit_count: u32,
}

/// A request from a miner.
#[derive(Debug, Clone, PartialEq)]
pub enum Request<'a> {
    Configure(Configure),
    Subscribe {
        user_agent: Option<Cow<'a, str>>,
        /// A session id from an earlier connection, to resume it.
        session_id: Option<Cow<'a, str>>,
    },
    Authorize {
        worker: Cow<'a, str>,
        password: Option<Cow<'a, str>>,
    },
    Submit(Submit<'a>),
    SuggestDifficulty(f64),
    ExtranonceSubscribe,
    /// A method the pool does not serve; it is answered with an error.
    Unknown(Cow<'a, str>),
}

/// A request and the id to answer it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub id: Id<'a>,
    pub request: Request<'a>,
}

/// Why a line could not be read as a request. The id is kept where it could be read, so that the
/// error reply reaches the right request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError<'a> {
    pub id: Id<'a>,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not JSON, or not a JSON-RPC request object.
    NotJsonRpc,
    /// The id is an object, array or boolean.
    BadId,
    /// The method is known but its parameters are not what it takes.
    BadParams(&'static str),
}

impl ParseErrorKind {
    /// The Stratum error to answer with.
    pub fn stratum_error(self) -> StratumError {
        match self {
            ParseErrorKind::NotJsonRpc => {
                StratumError::new(ErrorCode::Other, "Invalid JSON-RPC request")
            }
            ParseErrorKind::BadId => StratumError::new(ErrorCode::Other, "Invalid request id"),
            ParseErrorKind::BadParams(method) => StratumError::new(
                ErrorCode::Other,
                match method {
                    "mining.submit" => "Invalid params for mining.submit",
                    "mining.subscribe" => "Invalid params for mining.subscribe",
                    "mining.authorize" => "Invalid params for mining.authorize",
                    "mining.configure" => "Invalid params for mining.configure",
                    "mining.suggest_difficulty" => "Invalid params for mining.suggest_difficulty",
                    _ => "Invalid params",
                },
            ),
        }
    }
}

fn id_of(raw: Option<&RawValue>) -> Result<Id<'_>, ()> {
    match raw.map(RawValue::get) {
        None => Ok(Id(None)),
        Some(text) => match text.as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') => Ok(Id(Some(text))),
            Some(b'n') => Ok(Id(None)),
            _ => Err(()),
        },
    }
}

fn params<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    method: &'static str,
) -> Result<T, ParseErrorKind> {
    let text = raw.map_or("[]", RawValue::get);
    serde_json::from_str(text).map_err(|_| ParseErrorKind::BadParams(method))
}

/// A number, or a string holding one (some miners quote difficulties).
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Num(f64),
            Str(&'a str),
        }
        match Either::deserialize(d)? {
            Either::Num(n) => Ok(Number(n)),
            Either::Str(s) => s.trim().parse().map(Number).map_err(de::Error::custom),
        }
    }
}

fn parse_configure(raw: Option<&RawValue>) -> Result<Configure, ParseErrorKind> {
    const METHOD: &str = "mining.configure";
    let bad = ParseErrorKind::BadParams(METHOD);
    let (names, options): (
        Vec<String>,
        Option<serde_json::Map<String, serde_json::Value>>,
    ) = match params::<(
        Vec<String>,
        Option<serde_json::Map<String, serde_json::Value>>,
    )>(raw, METHOD)
    {
        Ok(v) => v,
        Err(_) => (params::<(Vec<String>,)>(raw, METHOD)?.0, None),
    };
    let options = options.unwrap_or_default();
    let mut out = Configure::default();
    for name in names {
        match name.as_str() {
            "version-rolling" => {
                let mask = match options.get("version-rolling.mask") {
                    None => u32::MAX,
                    Some(serde_json::Value::String(s)) => {
                        sluice_core::hex::decode_u32_loose(s.as_bytes()).map_err(|_| bad)?
                    }
                    Some(_) => return Err(bad),
                };
                let min_bit_count = match options.get("version-rolling.min-bit-count") {
                    None => 0,
                    Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or(bad)?,
                };
                out.version_rolling = Some(VersionRolling {
                    mask,
                    min_bit_count,
                });
            }
            "minimum-difficulty" => {
                let value = options
                    .get("minimum-difficulty.value")
                    .and_then(serde_json::Value::as_f64)
                    .ok_or(bad)?;
                out.minimum_difficulty = Some(value);
            }
            _ => out.unknown.push(name),
        }
    }
    Ok(out)
}

/// A parameter that is read when it is a string and passed over when it is anything else.
fn optional_str<'a>(raw: Option<&&'a RawValue>) -> Option<Cow<'a, str>> {
    raw.and_then(|r| serde_json::from_str::<CowStr<'a>>(r.get()).ok())
        .map(|s| s.0)
}

/// Parses one line (as [`super::LineFramer`] hands it out) into a request.
pub fn parse(line: &[u8]) -> Result<Message<'_>, ParseError<'_>> {
    let env: Envelope = serde_json::from_slice(line).map_err(|_| ParseError {
        id: Id::NULL,
        kind: ParseErrorKind::NotJsonRpc,
    })?;
    let id = id_of(env.id).map_err(|()| ParseError {
        id: Id::NULL,
        kind: ParseErrorKind::BadId,
    })?;
    let fail = |kind| ParseError { id, kind };
    let request = match env.method.0.as_ref() {
        "mining.submit" => Request::Submit(params(env.params, "mining.submit").map_err(fail)?),
        "mining.subscribe" => {
            // Some miners append host and port (a number); only the first two are read.
            let p: Vec<&RawValue> = params(env.params, "mining.subscribe").map_err(fail)?;
            Request::Subscribe {
                user_agent: optional_str(p.first()),
                session_id: optional_str(p.get(1)),
            }
        }
        "mining.authorize" => {
            let p: Vec<&RawValue> = params(env.params, "mining.authorize").map_err(fail)?;
            let worker = optional_str(p.first())
                .ok_or(fail(ParseErrorKind::BadParams("mining.authorize")))?;
            Request::Authorize {
                worker,
                password: optional_str(p.get(1)),
            }
        }
        "mining.configure" => Request::Configure(parse_configure(env.params).map_err(fail)?),
        "mining.suggest_difficulty" => {
            let (d,): (Number,) = params(env.params, "mining.suggest_difficulty").map_err(fail)?;
            Request::SuggestDifficulty(d.0)
        }
        "mining.extranonce.subscribe" => Request::ExtranonceSubscribe,
        _ => Request::Unknown(env.method.0),
    };
    Ok(Message { id, request })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Request<'_> {
        parse(line.as_bytes()).unwrap().request
    }

    #[test]
    fn submit_with_five_and_six_params() {
        let m = parse(br#"{"id": 4, "method": "mining.submit", "params": ["w.1", "1a", "00000001", "5F5E1000", "DEADBEEF"]}"#)
            .unwrap();
        assert_eq!(m.id.json(), "4");
        let Request::Submit(s) = m.request else {
            panic!("not a submit")
        };
        assert!(matches!(s.worker, Cow::Borrowed("w.1")));
        assert_eq!(
            (s.job_id, s.extranonce2, s.ntime, s.nonce),
            ("1a", "00000001", "5F5E1000", "DEADBEEF")
        );
        assert_eq!(s.version_bits, None);
        let Request::Submit(s) = req(
            r#"{"id":"x","method":"mining.submit","params":["w","1","00","00000000","00000000","00002000"]}"#,
        ) else {
            panic!()
        };
        assert_eq!(s.version_bits, Some("00002000"));
    }

    #[test]
    fn submit_with_wrong_arity_or_types_is_bad_params() {
        for params in [
            r#"["w","1","00","00000000"]"#,
            r#"["w","1","00","00000000","00000000","00002000","extra"]"#,
            r#"["w",1,"00","00000000","00000000"]"#,
            r#"{"worker":"w"}"#,
        ] {
            let line = format!(r#"{{"id":7,"method":"mining.submit","params":{params}}}"#);
            let err = parse(line.as_bytes()).unwrap_err();
            assert_eq!(err.id.json(), "7");
            assert_eq!(err.kind, ParseErrorKind::BadParams("mining.submit"));
        }
    }

    #[test]
    fn ids_are_numbers_strings_or_null() {
        for (line, id) in [
            (
                r#"{"id":null,"method":"mining.extranonce.subscribe","params":[]}"#,
                "null",
            ),
            (r#"{"method":"mining.extranonce.subscribe"}"#, "null"),
            (
                r#"{"id":"abc","method":"mining.extranonce.subscribe","params":[]}"#,
                "\"abc\"",
            ),
            (
                r#"{"id":-3,"method":"mining.extranonce.subscribe","params":[]}"#,
                "-3",
            ),
            (
                r#"{"id":1.5,"method":"mining.extranonce.subscribe","params":[]}"#,
                "1.5",
            ),
        ] {
            assert_eq!(parse(line.as_bytes()).unwrap().id.json(), id, "{line}");
        }
        let err = parse(br#"{"id":[1],"method":"mining.subscribe","params":[]}"#).unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::BadId);
        assert_eq!(
            parse(b"not json").unwrap_err().kind,
            ParseErrorKind::NotJsonRpc
        );
        assert_eq!(
            parse(br#"{"id":1}"#).unwrap_err().kind,
            ParseErrorKind::NotJsonRpc
        );
    }

    #[test]
    fn subscribe_authorize_suggest_and_unknown() {
        assert_eq!(
            req(r#"{"id":1,"method":"mining.subscribe","params":["cgminer/4.11",null]}"#),
            Request::Subscribe {
                user_agent: Some("cgminer/4.11".into()),
                session_id: None
            }
        );
        assert_eq!(
            req(r#"{"id":1,"method":"mining.subscribe","params":["bmminer/2.0","0badc0de","pool",3333]}"#)
                .clone(),
            Request::Subscribe { user_agent: Some("bmminer/2.0".into()), session_id: Some("0badc0de".into()) }
        );
        assert_eq!(
            req(r#"{"id":1,"method":"mining.subscribe"}"#),
            Request::Subscribe {
                user_agent: None,
                session_id: None
            }
        );
        assert_eq!(
            req(r#"{"id":2,"method":"mining.authorize","params":["addr.rig\u0031","d=1024"]}"#),
            Request::Authorize {
                worker: "addr.rig1".into(),
                password: Some("d=1024".into())
            }
        );
        assert!(parse(br#"{"id":2,"method":"mining.authorize","params":[]}"#).is_err());
        assert_eq!(
            req(r#"{"id":3,"method":"mining.suggest_difficulty","params":[512.5]}"#),
            Request::SuggestDifficulty(512.5)
        );
        assert_eq!(
            req(r#"{"id":3,"method":"mining.suggest_difficulty","params":["64"]}"#),
            Request::SuggestDifficulty(64.0)
        );
        assert_eq!(
            req(r#"{"id":9,"method":"mining.ping","params":[]}"#),
            Request::Unknown("mining.ping".into())
        );
    }

    #[test]
    fn configure_version_rolling_and_minimum_difficulty() {
        let r = req(
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty","subscribe-extranonce"],{"version-rolling.mask":"1FFFE000","version-rolling.min-bit-count":2,"minimum-difficulty.value":2048}]}"#,
        );
        assert_eq!(
            r,
            Request::Configure(Configure {
                version_rolling: Some(VersionRolling {
                    mask: 0x1fffe000,
                    min_bit_count: 2
                }),
                minimum_difficulty: Some(2048.0),
                unknown: vec!["subscribe-extranonce".into()],
            })
        );
        assert!(parse(br#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"xyz"}]}"#).is_err());
    }
}
