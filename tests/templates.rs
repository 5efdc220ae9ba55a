//! Jobs from `getblocktemplate` results: the coinbase a template produces, the block a winning share
//! assembles (segwit included, checked with the `bitcoin` crate), and templates that must be refused.

mod support;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Block, Transaction};
use sluice::chain::template::TemplateError;
use sluice::chain::{BlockTemplate, CoinbaseConfig, Job, Payout};
use sluice::share::{DuplicateLimits, SessionShares, ShareRules};
use sluice::stratum::{parse, Request};
use sluice::units::{Extranonce1, ExtranonceSizes, JobId, Target, VersionMask};
use sluice_stratum::share::ValidateSubmit;
use support::*;

fn solve(job: &Job, en1: &[u8]) -> Vec<u8> {
    let line = format!(
        r#"{{"id":1,"method":"mining.submit","params":["w","{}","{}","{:08x}","00000000"]}}"#,
        job.id,
        "00".repeat(job.extranonce.extranonce2()),
        job.ntime
    );
    let Request::Submit(submit) = parse(line.as_bytes()).unwrap().request else {
        panic!()
    };
    let en1 = Extranonce1::new(en1).unwrap();
    let rules = ShareRules {
        version_mask: VersionMask::NONE,
        now: job.ntime,
        share_target: Target::MAX,
    };
    let verdict = SessionShares::new(DuplicateLimits::default())
        .validate_submit(job, false, &en1, &submit, &rules);
    assert_eq!(verdict.result(), Ok(()));
    let proof = verdict.proof().unwrap();
    job.assemble_block(&proof.header, en1.as_bytes(), proof.extranonce2())
}

#[test]
fn template_coinbase_pays_the_address_with_height_tag_and_commitment() {
    let json = template_json(PREV_A, 123_456, EASY_BITS, CURTIME, 5, true);
    let template = BlockTemplate::from_json(json.as_bytes()).unwrap();
    let job = Job::new(
        JobId(1),
        template.job_parts(&coinbase_config(4, 8)).unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(
        job.merkle_branch.len(),
        3,
        "5 transactions and the coinbase: three levels"
    );
    assert_eq!(job.mintime, CURTIME - 3600);

    let block: Block = deserialize(&solve(&job, &[1, 2, 3, 4])).unwrap();
    assert_eq!(block.txdata.len(), 6);
    assert!(block.check_merkle_root());
    let coinbase = &block.txdata[0];
    assert!(coinbase.is_coinbase());
    assert_eq!(block.bip34_block_height().unwrap(), 123_456);
    let script = coinbase.input[0].script_sig.as_bytes();
    assert!(script.windows(13).any(|w| w == b"/sluice-test/"));
    let payout =
        bitcoin::Address::from_script(&coinbase.output[0].script_pubkey, bitcoin::Network::Regtest)
            .unwrap();
    assert_eq!(payout.to_string(), REGTEST_ADDRESS);
    assert_eq!(coinbase.output[0].value.to_sat(), 5_000_000_000);
    assert_eq!(
        bitcoin::hex::DisplayHex::to_lower_hex_string(coinbase.output[1].script_pubkey.as_bytes()),
        "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9"
    );
    // The coinbase carries the witness reserved value (32 zero bytes).
    assert_eq!(coinbase.input[0].witness.len(), 1);
    assert_eq!(coinbase.input[0].witness.nth(0).unwrap(), [0u8; 32]);
}

#[test]
fn template_without_witness_commitment_gives_a_legacy_coinbase() {
    let json = template_json(PREV_A, 200, EASY_BITS, CURTIME, 2, false);
    let template = BlockTemplate::from_json(json.as_bytes()).unwrap();
    let job = Job::new(
        JobId(1),
        template.job_parts(&coinbase_config(4, 4)).unwrap(),
        true,
    )
    .unwrap();
    let raw = solve(&job, &[9, 9, 9, 9]);
    let block: Block = deserialize(&raw).unwrap();
    assert!(block.txdata[0].input[0].witness.is_empty());
    assert!(block.check_merkle_root());
    assert_eq!(serialize(&block), raw);
}

/// A segwit template made from the recorded mainnet block: its transactions (with witnesses), their
/// txids, and its witness commitment. The block our job assembles must pass the `bitcoin` crate's
/// merkle-root and witness-commitment checks.
#[test]
fn segwit_template_from_a_mainnet_block_assembles_a_valid_block() {
    let (_, raw) = recorded_blocks().pop().unwrap();
    let recorded = parse_block(&raw);
    let coinbase = &recorded.txdata[0];
    let commitment = coinbase
        .output
        .iter()
        .rev()
        .find(|o| {
            o.script_pubkey
                .as_bytes()
                .starts_with(&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed])
        })
        .expect("the recorded block commits to witnesses");
    let transactions: Vec<_> = recorded.txdata[1..]
        .iter()
        .map(|tx: &Transaction| {
            serde_json::json!({
                "data": bitcoin::hex::DisplayHex::to_lower_hex_string(&serialize(tx)[..]),
                "txid": tx.compute_txid().to_string(),
                "hash": tx.compute_wtxid().to_string(),
            })
        })
        .collect();
    let template = serde_json::json!({
        "version": recorded.header.version.to_consensus(),
        "previousblockhash": recorded.header.prev_blockhash.to_string(),
        "transactions": transactions,
        "coinbasevalue": coinbase.output.iter().map(|o| o.value.to_sat()).sum::<u64>(),
        "bits": format!("{:08x}", recorded.header.bits.to_consensus()),
        "height": recorded.bip34_block_height().unwrap(),
        "curtime": recorded.header.time,
        "mintime": recorded.header.time - 1000,
        "default_witness_commitment":
            bitcoin::hex::DisplayHex::to_lower_hex_string(commitment.script_pubkey.as_bytes()),
    });
    let template = BlockTemplate::from_json(template.to_string().as_bytes()).unwrap();
    let config = CoinbaseConfig {
        payouts: vec![Payout::to_address(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            bitcoin::Network::Bitcoin,
            1,
        )
        .unwrap()],
        tag: b"/sluice/".to_vec(),
        extranonce: ExtranonceSizes::new(4, 8).unwrap(),
        tx_version: 2,
    };
    let job = Job::new(JobId(1), template.job_parts(&config).unwrap(), true).unwrap();
    assert_eq!(job.transaction_count(), recorded.txdata.len());

    let block: Block = deserialize(&solve(&job, &[0xca, 0xfe, 0xba, 0xbe])).unwrap();
    assert!(block.check_merkle_root(), "merkle root");
    assert!(block.check_witness_commitment(), "witness commitment");
    assert_eq!(block.txdata[1..], recorded.txdata[1..]);
    assert_eq!(block.header.prev_blockhash, recorded.header.prev_blockhash);
    assert_ne!(
        block.txdata[0].compute_txid(),
        recorded.txdata[0].compute_txid(),
        "our own coinbase"
    );
}

#[test]
fn bad_templates_are_errors() {
    let good: serde_json::Value =
        serde_json::from_str(&template_json(PREV_A, 10, EASY_BITS, CURTIME, 2, true)).unwrap();
    let cfg = coinbase_config(4, 8);
    let variant = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut t = good.clone();
        f(&mut t);
        BlockTemplate::from_json(t.to_string().as_bytes())
            .and_then(|t| t.job_parts(&cfg).map(|_| ()))
    };
    assert!(variant(&|_| {}).is_ok());
    assert_eq!(
        variant(&|t| t["previousblockhash"] = "00".into()),
        Err(TemplateError::Hex {
            field: "previousblockhash"
        })
    );
    assert_eq!(
        variant(&|t| t["bits"] = "1d00fff".into()),
        Err(TemplateError::Hex { field: "bits" })
    );
    assert_eq!(
        variant(&|t| t["bits"] = "04923456".into()),
        Err(TemplateError::Bits(0x0492_3456))
    );
    assert_eq!(
        variant(&|t| t["curtime"] = (1u64 << 33).into()),
        Err(TemplateError::Range { field: "curtime" })
    );
    assert_eq!(
        variant(&|t| {
            t["transactions"][1].as_object_mut().unwrap().remove("txid");
            t["transactions"][1].as_object_mut().unwrap().remove("hash");
        }),
        Err(TemplateError::MissingTxid { index: 1 })
    );
    assert_eq!(
        variant(&|t| t["transactions"][0]["data"] = "abc".into()),
        Err(TemplateError::Hex {
            field: "transactions[].data"
        })
    );
    assert_eq!(
        variant(&|t| t["default_witness_commitment"] = "6a0100".into()),
        Err(TemplateError::WitnessCommitment)
    );
    assert!(matches!(
        variant(&|t| t["height"] = "ten".into()),
        Err(TemplateError::Json(_))
    ));
    assert!(matches!(
        BlockTemplate::from_json(b"[]"),
        Err(TemplateError::Json(_))
    ));

    let mut long_tag = coinbase_config(8, 16);
    long_tag.tag = vec![b'x'; 80];
    let t = BlockTemplate::from_json(good.to_string().as_bytes()).unwrap();
    assert!(matches!(
        t.job_parts(&long_tag),
        Err(TemplateError::Coinbase(_))
    ));
}
