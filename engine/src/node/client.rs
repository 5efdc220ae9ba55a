//! One node as the pool uses it: the four calls it makes, the start-up check that turns every way a
//! node can be wrong into a message naming the key to fix, and what `submitblock` answers mean.

use std::time::Duration;

use bitcoin::Network;
use serde::Deserialize;

use crate::chain::template::BlockTemplate;
use crate::node::rpc::{Auth, Endpoint, RpcClient, RpcError, RPC_IN_WARMUP};

/// One configured node, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// The config key prefix that names this node in messages (`nodes[0]`), or `--node`.
    pub key: String,
    pub endpoint: Endpoint,
    /// The node's ZMQ `hashblock` publisher (`tcp://host:port`), when it has one.
    pub zmq_hashblock: Option<String>,
    /// Lower is preferred; ties keep configuration order.
    pub priority: u32,
}

impl NodeSettings {
    /// How logs and status pages name the node: its key and URL without credentials.
    pub fn name(&self) -> String {
        format!("{} ({})", self.key, self.endpoint.display())
    }
}

/// The node's `chain` name for a network, as `getblockchaininfo` prints it.
pub fn chain_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChainInfo {
    pub chain: String,
    pub blocks: u64,
    #[serde(default)]
    pub headers: Option<u64>,
    /// Absent on some forks; then `blocks < headers` stands in for it.
    #[serde(default)]
    pub initialblockdownload: Option<bool>,
    pub bestblockhash: String,
}

/// Why a node cannot serve the pool, with the fix. `fatal` problems are configuration mistakes
/// that no amount of waiting repairs; the others may clear (a node starting or syncing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProblem {
    pub message: String,
    pub fatal: bool,
}

impl std::fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub use crate::chain::blocks::SubmitResult;

/// A node and its RPC connection.
pub struct Node {
    pub settings: NodeSettings,
    rpc: RpcClient,
}

impl Node {
    pub fn new(settings: NodeSettings, timeout: Duration) -> Node {
        let rpc = RpcClient::new(settings.endpoint.clone(), timeout);
        Node { settings, rpc }
    }

    pub fn blockchain_info(&mut self) -> Result<ChainInfo, RpcError> {
        self.rpc.call("getblockchaininfo", &serde_json::json!([]))
    }

    /// `getblocktemplate` with the segwit rule (nodes without segwit ignore it).
    pub fn template(&mut self) -> Result<BlockTemplate, RpcError> {
        let raw = self.rpc.call_raw(
            "getblocktemplate",
            &serde_json::json!([{"rules": ["segwit"]}]),
        )?;
        BlockTemplate::from_json(&raw).map_err(|e| RpcError::Malformed(e.to_string()))
    }

    /// The best block's hash as the node prints it.
    pub fn best_block_hash(&mut self) -> Result<String, RpcError> {
        self.rpc.call("getbestblockhash", &serde_json::json!([]))
    }

    /// One `submitblock`; `Err` only when the node gave no usable answer.
    pub fn submit_block(&mut self, block_hex: &str) -> Result<SubmitResult, RpcError> {
        match self
            .rpc
            .call::<Option<String>>("submitblock", &serde_json::json!([block_hex]))
        {
            Ok(answer) => Ok(SubmitResult::from_answer(answer)),
            // A node may refuse the block with an RPC error rather than a reason string.
            Err(RpcError::Rpc { code, message }) if code != RPC_IN_WARMUP => Ok(
                SubmitResult::Rejected(format!("{message} (RPC error {code})")),
            ),
            Err(e) => Err(e),
        }
    }

    /// Checks that the node can serve the pool on `network`: it answers, accepts the credentials,
    /// is on the right chain, has finished its initial download and gives a usable template.
    pub fn check(&mut self, network: Network) -> Result<ChainInfo, NodeProblem> {
        let key = self.settings.key.clone();
        let url = self.settings.endpoint.display();
        let info = self
            .blockchain_info()
            .map_err(|e| self.describe(&e, "getblockchaininfo"))?;
        let want = chain_name(network);
        if info.chain != want {
            return Err(NodeProblem {
                message: format!(
                    "{key}: the node at {url} is on chain {:?} but pool.network is {network} (chain {want:?}): point {key}.url at a {want} node or change pool.network",
                    info.chain
                ),
                fatal: true,
            });
        }
        let syncing = info
            .initialblockdownload
            .unwrap_or_else(|| info.headers.is_some_and(|h| h > info.blocks));
        if syncing {
            return Err(NodeProblem {
                message: format!(
                    "{key}: the node at {url} is still in initial block download (block {} of {}): wait for it to sync",
                    info.blocks,
                    info.headers.map_or("?".to_owned(), |h| h.to_string())
                ),
                fatal: false,
            });
        }
        self.template()
            .map_err(|e| self.describe(&e, "getblocktemplate"))?;
        Ok(info)
    }

    /// Turns an RPC failure into a message that names the key to fix.
    pub fn describe(&self, error: &RpcError, call: &str) -> NodeProblem {
        let key = &self.settings.key;
        let url = self.settings.endpoint.display();
        let (message, fatal) = match error {
            RpcError::Connect(e) => (format!("{key}.url: cannot reach the node at {url} ({e}): is it running, with -server and its RPC port open to this host (-rpcbind, -rpcallowip)?"), false),
            RpcError::Io(e) => (format!("{key}: the node at {url} did not answer {call} ({e})"), false),
            RpcError::Unauthorized => (
                match &self.settings.endpoint.auth {
                    Auth::CookieFile(p) => format!("{key}.rpc_cookie_file: the node at {url} refused the cookie in {}: is it this node's cookie (its -datadir and network)?", p.display()),
                    Auth::None => format!("{key}.rpc_user: the node at {url} wants credentials: set {key}.rpc_user and {key}.rpc_password, or {key}.rpc_cookie_file"),
                    Auth::UserPassword { .. } => format!("{key}.rpc_user / {key}.rpc_password: the node at {url} refused them (check -rpcuser/-rpcpassword or -rpcauth on the node)"),
                },
                true,
            ),
            RpcError::Cookie { path, reason } => (format!("{key}.rpc_cookie_file: cannot read {path}: {reason}"), false),
            RpcError::Rpc { code: RPC_IN_WARMUP, message } => (format!("{key}: the node at {url} is still starting ({message})"), false),
            // bitcoind: -9 not connected to peers, -10 still downloading blocks.
            RpcError::Rpc { code: -9, message } => (format!("{key}: the node at {url} has no peers, so it will not give templates ({message}): check its network connection or -connect/-addnode"), false),
            RpcError::Rpc { code: -10, message } => (format!("{key}: the node at {url} is still in initial block download ({message}): wait for it to sync"), false),
            RpcError::Rpc { code: -32601, .. } => (format!("{key}: the node at {url} has no {call} RPC: is it a bitcoind-compatible node?"), true),
            other => (format!("{key}: {call} on the node at {url} failed: {other}"), false),
        };
        NodeProblem { message, fatal }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::rpc::scripted;

    #[test]
    fn submitblock_answers_are_classified() {
        assert_eq!(SubmitResult::from_answer(None), SubmitResult::Accepted);
        assert_eq!(
            SubmitResult::from_answer(Some("duplicate".into())),
            SubmitResult::Duplicate
        );
        assert_eq!(
            SubmitResult::from_answer(Some("duplicate-invalid".into())),
            SubmitResult::Rejected("duplicate-invalid".into())
        );
        let r = SubmitResult::from_answer(Some("bad-txnmrklroot".into()));
        assert_eq!(
            (r.kind(), r.reason()),
            ("rejected", Some("bad-txnmrklroot"))
        );
    }

    fn node_at(addr: &str) -> Node {
        Node::new(
            NodeSettings {
                key: "nodes[0]".into(),
                endpoint: Endpoint::parse(&format!("http://{addr}"), Auth::None).unwrap(),
                zmq_hashblock: None,
                priority: 0,
            },
            Duration::from_secs(5),
        )
    }

    fn chain_info(chain: &str, ibd: bool) -> String {
        format!(
            r#"{{"result":{{"chain":"{chain}","blocks":100,"headers":900000,"initialblockdownload":{ibd},"bestblockhash":"00"}},"error":null,"id":1}}"#
        )
    }

    #[test]
    fn a_node_in_initial_block_download_is_a_problem_that_may_clear() {
        // The regtest node of the tests never reports initial block download: a scripted node does.
        let (addr, _peer) = scripted::serve(vec![scripted::http(200, &chain_info("main", true))]);
        let problem = node_at(&addr).check(Network::Bitcoin).unwrap_err();
        assert!(!problem.fatal);
        assert!(
            problem.message.starts_with("nodes[0]: ")
                && problem
                    .message
                    .contains("initial block download (block 100 of 900000)"),
            "{problem}"
        );
        // GBT's own "still downloading" error says the same.
        let (addr, _peer) = scripted::serve(vec![
            scripted::http(200, &chain_info("main", false)),
            scripted::http(
                500,
                r#"{"result":null,"error":{"code":-10,"message":"Bitcoin is downloading blocks..."},"id":2}"#,
            ),
        ]);
        let problem = node_at(&addr).check(Network::Bitcoin).unwrap_err();
        assert!(!problem.fatal);
        assert!(
            problem.message.contains("initial block download"),
            "{problem}"
        );
    }

    #[test]
    fn a_node_on_another_chain_is_fatal_and_names_pool_network() {
        let (addr, _peer) = scripted::serve(vec![scripted::http(200, &chain_info("test", false))]);
        let problem = node_at(&addr).check(Network::Bitcoin).unwrap_err();
        assert!(problem.fatal);
        assert!(
            problem.message.contains("\"test\"") && problem.message.contains("pool.network"),
            "{problem}"
        );
    }

    #[test]
    fn chain_names_match_getblockchaininfo() {
        assert_eq!(chain_name(Network::Bitcoin), "main");
        assert_eq!(chain_name(Network::Testnet), "test");
        assert_eq!(chain_name(Network::Regtest), "regtest");
    }
}
