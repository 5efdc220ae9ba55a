//! Block templates as `getblocktemplate` returns them (BIP22/23, with the segwit rule), and their
//! conversion into [`JobParts`].
//!
//! Everything in a template comes from a node and is checked here: hex, lengths, the compact target,
//! the witness commitment's form. A bad template is an error, never a panic.

use serde::Deserialize;

use crate::chain::coinbase::{self, CoinbaseConfig, CoinbaseError};
use crate::chain::job::JobParts;
use crate::hex;
use crate::units::Target;

/// The fields of a `getblocktemplate` result that a pool uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockTemplate {
    pub version: u32,
    /// The previous block's hash, as nodes print it (byte-reversed).
    pub previousblockhash: String,
    #[serde(default)]
    pub transactions: Vec<TemplateTransaction>,
    pub coinbasevalue: u64,
    /// The compact target, as eight hex digits.
    pub bits: String,
    pub height: u64,
    pub curtime: u64,
    #[serde(default)]
    pub mintime: Option<u64>,
    #[serde(default)]
    pub default_witness_commitment: Option<String>,
}

/// One transaction of a template.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateTransaction {
    /// The serialized transaction, with witness when it has one.
    pub data: String,
    /// The txid (byte-reversed hex). BIP22 templates without segwit carry it as `hash`.
    #[serde(default)]
    pub txid: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is not valid JSON for getblocktemplate: {0}")]
    Json(String),
    #[error("template field {field} is not valid hex of the right length")]
    Hex { field: &'static str },
    #[error("template transaction {index} has neither txid nor hash")]
    MissingTxid { index: usize },
    #[error("template field {field} is out of range")]
    Range { field: &'static str },
    #[error("template bits {0:08x} is not a valid compact target")]
    Bits(u32),
    #[error("default_witness_commitment is not an OP_RETURN witness commitment")]
    WitnessCommitment,
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
}

/// The prefix of a witness commitment output script: OP_RETURN, push 36, `aa21a9ed`.
const WITNESS_COMMITMENT_PREFIX: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

fn display_hash(field: &'static str, s: &str) -> Result<[u8; 32], TemplateError> {
    let mut out = [0u8; 32];
    hex::decode_into(s.as_bytes(), &mut out).map_err(|_| TemplateError::Hex { field })?;
    out.reverse();
    Ok(out)
}

impl BlockTemplate {
    pub fn from_json(json: &[u8]) -> Result<BlockTemplate, TemplateError> {
        serde_json::from_slice(json).map_err(|e| TemplateError::Json(e.to_string()))
    }

    /// The job parts for this template with the pool's coinbase.
    pub fn job_parts(&self, config: &CoinbaseConfig) -> Result<JobParts, TemplateError> {
        let prev_hash = display_hash("previousblockhash", &self.previousblockhash)?;
        let nbits = hex::decode_u32_exact(self.bits.as_bytes())
            .map_err(|_| TemplateError::Hex { field: "bits" })?;
        Target::from_compact(nbits).map_err(|_| TemplateError::Bits(nbits))?;
        let ntime =
            u32::try_from(self.curtime).map_err(|_| TemplateError::Range { field: "curtime" })?;
        let mintime = match self.mintime {
            Some(t) => u32::try_from(t).map_err(|_| TemplateError::Range { field: "mintime" })?,
            None => 0,
        };

        let witness_commitment = match &self.default_witness_commitment {
            None => None,
            Some(h) => {
                let script = hex::decode_vec(h).map_err(|_| TemplateError::Hex {
                    field: "default_witness_commitment",
                })?;
                if script.len() < 38 || !script.starts_with(&WITNESS_COMMITMENT_PREFIX) {
                    return Err(TemplateError::WitnessCommitment);
                }
                Some(script)
            }
        };

        let mut txids = Vec::with_capacity(self.transactions.len());
        let data_len: usize = self.transactions.iter().map(|t| t.data.len() / 2).sum();
        let mut transactions = Vec::with_capacity(data_len);
        for (index, tx) in self.transactions.iter().enumerate() {
            let id = tx
                .txid
                .as_deref()
                .or(tx.hash.as_deref())
                .ok_or(TemplateError::MissingTxid { index })?;
            txids.push(display_hash("transactions[].txid", id)?);
            let start = transactions.len();
            if !tx.data.len().is_multiple_of(2) {
                return Err(TemplateError::Hex {
                    field: "transactions[].data",
                });
            }
            transactions.resize(start + tx.data.len() / 2, 0);
            hex::decode_into(tx.data.as_bytes(), &mut transactions[start..]).map_err(|_| {
                TemplateError::Hex {
                    field: "transactions[].data",
                }
            })?;
        }

        let parts = coinbase::build(
            config,
            self.height,
            self.coinbasevalue,
            witness_commitment.as_deref(),
        )?;
        Ok(JobParts {
            height: self.height,
            prev_hash,
            version: self.version,
            nbits,
            ntime,
            mintime,
            coinb1: parts.coinb1,
            coinb2: parts.coinb2,
            extranonce: config.extranonce,
            txids,
            transactions,
            witness_reserved_value: witness_commitment.map(|_| [0u8; 32]),
        })
    }
}
