//! Reading stream entries (`XREVRANGE`, `XREAD`) as ids with their fields in written order.

use crate::connect::Redis;
use crate::error::Result;

/// One stream entry. Values are read as bytes and decoded leniently: a miner's user agent is
/// whatever it sent, and one odd byte must not make the whole listing fail.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// A field's value, or "" when the entry lacks it.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

type RawEntries = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

fn decode(raw: RawEntries) -> Vec<Entry> {
    raw.into_iter()
        .map(|(id, fields)| Entry {
            id,
            fields: fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Up to `count` entries, newest first, with ids at or below `end` (`+` for the newest).
pub fn newest(redis: &mut Redis, key: &str, end: &str, count: usize) -> Result<Vec<Entry>> {
    let raw: RawEntries = redis.query(
        redis::cmd("XREVRANGE")
            .arg(key)
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(count),
    )?;
    Ok(decode(raw))
}

/// Entries after `after`, waiting up to `block_ms` for the first; empty when none came.
pub fn after(redis: &mut Redis, key: &str, after: &str, block_ms: u64) -> Result<Vec<Entry>> {
    let reply: Option<Vec<(String, RawEntries)>> = redis.query(
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(key)
            .arg(after),
    )?;
    Ok(reply
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(_, entries)| decode(entries))
        .collect())
}
