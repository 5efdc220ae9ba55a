//! Real blocks through the share path: each recorded block's coinbase is split at an extranonce
//! position, a job is built from the block's header fields and transactions, and the block's own
//! nonce, ntime and version are submitted. The validator must reproduce the block's hash and call it
//! a block, and block assembly must reproduce the block's bytes exactly.

mod support;

use bitcoin::hashes::Hash;
use sluice::share::{DuplicateLimits, SessionShares, ShareRules};
use sluice::stratum::{parse, Request};
use sluice::units::{Extranonce1, HeaderHash, Target};
use sluice_stratum::codec::message::notify_line;
use sluice_stratum::share::ValidateSubmit;
use support::*;

#[test]
fn recorded_blocks_validate_and_reassemble() {
    for (name, raw) in recorded_blocks() {
        let block = parse_block(&raw);
        assert!(
            block.check_merkle_root(),
            "{name}: vector is not a valid block"
        );
        let split = split_coinbase(&block);
        let job = job_from_block(&block, &split);
        let header = &block.header;
        let version = header.version.to_consensus() as u32;

        // The share as a miner sends it: upper-case hex, version bits when the block rolled them.
        let version_bits = version & VERSION_MASK;
        let line = format!(
            r#"{{"id":1,"method":"mining.submit","params":["worker","{}","{}","{:08X}","{:08X}"{}]}}"#,
            job.id,
            bitcoin::hex::DisplayHex::to_upper_hex_string(&split.extranonce2[..]),
            header.time,
            header.nonce,
            if version_bits != 0 {
                format!(r#","{version_bits:08x}""#)
            } else {
                String::new()
            },
        );
        let message = parse(line.as_bytes()).unwrap();
        let Request::Submit(submit) = message.request else {
            panic!("{name}: not a submit")
        };
        let extranonce1 = Extranonce1::new(&split.extranonce1).unwrap();
        let network_target = Target::from_compact(header.bits.to_consensus()).unwrap();
        let rules = ShareRules {
            version_mask: sluice::units::VersionMask(VERSION_MASK),
            now: header.time,
            share_target: network_target,
        };
        let mut shares = SessionShares::new(DuplicateLimits::default());
        let verdict = shares.validate_submit(&job, false, &extranonce1, &submit, &rules);

        assert_eq!(verdict.result(), Ok(()), "{name}");
        assert!(verdict.is_block(), "{name}: not called a block");
        let proof = verdict.proof().unwrap();
        assert_eq!(
            proof.hash,
            HeaderHash(block.block_hash().to_byte_array()),
            "{name}"
        );
        assert_eq!(
            proof.header[..],
            bitcoin::consensus::serialize(header)[..],
            "{name}"
        );

        let assembled =
            job.assemble_block(&proof.header, extranonce1.as_bytes(), proof.extranonce2());
        assert_eq!(assembled.len(), raw.len(), "{name}: assembled length");
        assert!(
            assembled == raw,
            "{name}: assembled block differs from the recorded one"
        );

        // The same share again is a duplicate, and still a block.
        let again = shares.validate_submit(&job, false, &extranonce1, &submit, &rules);
        assert_eq!(
            again.result(),
            Err(sluice::share::Reject::Duplicate),
            "{name}"
        );
        assert!(again.is_block(), "{name}");
    }
}

#[test]
fn notify_of_recorded_blocks_rebuilds_their_headers_in_a_reference_miner() {
    for (name, raw) in recorded_blocks() {
        let block = parse_block(&raw);
        let split = split_coinbase(&block);
        let job = job_from_block(&block, &split);
        let work = read_notify(notify_line(&job));
        assert_eq!(work.job_id, job.id.to_string());
        assert!(work.clean);
        assert_eq!(work.nbits, block.header.bits.to_consensus());
        let header = reference_header(
            &work,
            &split.extranonce1,
            &split.extranonce2,
            block.header.version.to_consensus() as u32,
            block.header.time,
            block.header.nonce,
        );
        assert_eq!(header.block_hash(), block.block_hash(), "{name}");
        assert_eq!(
            work.version | (block.header.version.to_consensus() as u32 & VERSION_MASK),
            block.header.version.to_consensus() as u32
        );
    }
}
