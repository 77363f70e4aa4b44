//! Test vectors from `shared/reference/pocket-relay-protocol.md` §6, shared by the unit tests of
//! the protocol module and the relay client. Values are copied verbatim from the reference.

// §6.1 — generated with real pocket-js 0.9.2-rc, cross-checked with Node crypto.
pub const APP_PUB: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
pub const CLIENT_PUB: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
pub const SERVICER_PUB: &str = "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1";
pub const CHAIN: &str = "0021";
pub const SESSION_HEIGHT: i64 = 101;
pub const BLOCK_HEIGHT: i64 = 101;
pub const ENTROPY: i64 = 7226337963384726;
pub const DATA: &str = r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#;

pub const WIRE: &str = r#"{"payload":{"data":"{\"jsonrpc\":\"2.0\",\"method\":\"eth_blockNumber\",\"params\":[],\"id\":1}","method":"POST","path":"","headers":null},"meta":{"block_height":101},"proof":{"entropy":7226337963384726,"session_block_height":101,"servicer_pub_key":"ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1","blockchain":"0021","aat":{"version":"0.0.1","app_pub_key":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","client_pub_key":"8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394","signature":"29c69ff702fd362f82b38220960fbb110aacffc5299f47533a18fc6ea94789f83fbbf386504a65971b722ff5216909da0bb6cef5953c08ad98240f03bea22505"},"signature":"b1555fc78838b57fa7d56318242ac6b23b8df14d70455ae874a1026805bd4362755f50dbec28ce356ab33a9f1cc62795211a64ee9f8b666679809dc5cbeb7109","request_hash":"f682374dfaa4bd423c51f49067a36ca999af35debfef8b04a8e1cac84a64311f"}}"#;

pub const AAT_SIG: &str = "29c69ff702fd362f82b38220960fbb110aacffc5299f47533a18fc6ea94789f83fbbf386504a65971b722ff5216909da0bb6cef5953c08ad98240f03bea22505";
pub const CLIENT_SIG: &str = "b1555fc78838b57fa7d56318242ac6b23b8df14d70455ae874a1026805bd4362755f50dbec28ce356ab33a9f1cc62795211a64ee9f8b666679809dc5cbeb7109";
pub const REQ_PREIMAGE: &str = r#"{"payload":{"data":"{\"jsonrpc\":\"2.0\",\"method\":\"eth_blockNumber\",\"params\":[],\"id\":1}","method":"POST","path":"","headers":null},"meta":{"block_height":101}}"#;
pub const REQUEST_HASH: &str = "f682374dfaa4bd423c51f49067a36ca999af35debfef8b04a8e1cac84a64311f";
pub const AAT_HASH: &str = "29df6f52f5551efd6e8158f58e9981b76f990383b66f2cc3d211c284ae241564";
pub const PROOF_HASH: &str = "4aac2ffeeaf73510d1e42cde4ce02ce3214ab7a389e0993f5c1bfb136bcf44f8";

pub const UPSTREAM_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}"#;
pub const RESP_PREIMAGE: &str = r#"{"signature":"","payload":"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10d4f\"}","Proof":"4aac2ffeeaf73510d1e42cde4ce02ce3214ab7a389e0993f5c1bfb136bcf44f8"}"#;
pub const RESP_HASH: &str = "bfdbe33cb54d6e7d736698777a6abfc9ab59acd7041c528441fc7b05d0d0d3a7";
pub const RESP_SIG: &str = "2ed506867d947913e9406f07af36425d3819912d860fa55febcb2c08ad8f99d404489d88fb520d5661e2093dc28b564a0d9662a920501483d42f70f1451e8f05";

/// The §6.1 AAT preimage (the reference elides the keys; they are the full keys above).
pub fn aat_preimage() -> String {
    format!(r#"{{"version":"0.0.1","app_pub_key":"{APP_PUB}","client_pub_key":"{CLIENT_PUB}","signature":""}}"#)
}

/// The §6.1 proof preimage, keys in full.
pub fn proof_preimage() -> String {
    format!(
        r#"{{"entropy":7226337963384726,"session_block_height":101,"servicer_pub_key":"{SERVICER_PUB}","blockchain":"0021","signature":"","token":"{AAT_HASH}","request_hash":"{REQUEST_HASH}"}}"#
    )
}

// §6.3 — pocket-js-LEGACY tests/utils/nock-util.ts `mockRelayForConsensus` (historic hex-JSON request_hash).
pub const NOCK_RELAY: &str = r#"{"payload":{"data":"{\"address\":\"20421fe2cbfbd7fc7f120a1d8eb7bc223cfcf2d5\"}","method":"","path":"/v1/query/account","headers":null},"meta":{"block_height":881},"proof":{"entropy":25863001945781196,"session_block_height":876,"servicer_pub_key":"78e4b0bd96eaa7acfa449c630f05a18acb21e4965c3c6245040f496382c28e67","blockchain":"0002","aat":{"version":"0.0.1","app_pub_key":"3895f3a84afb824d7e2e63c5042a93ccdb13e0f891d5d61d10289df50d6c251d","client_pub_key":"20ea750eda1fe0208b1098488966d52c741ea8246e76f2e51736c0131a63d442","signature":"90f00816fccd213dcc2b0a0fe50372849cc453847cb0ce605c5b9a234099a80432e5962b50f104964683ed9d968afbdb2341c4782723d36310388068658a1b0c"},"signature":"7393e34b4423a04a26f12862b8667dfd4a8467078f637702632f45a569b4c8485e622edf7ed305a4607b2b9865ba4ec161d24791fcfe5b355e1808d696c8a40e","request_hash":"7b227061796c6f6164223a7b2264617461223a227b5c22616464726573735c223a5c22323034323166653263626662643766633766313230613164386562376263323233636663663264355c227d222c226d6574686f64223a22222c2270617468223a222f76312f71756572792f6163636f756e74222c2268656164657273223a6e756c6c7d2c226d657461223a7b22626c6f636b5f686569676874223a3838317d7d"}}"#;
pub const NOCK_AAT_HASH: &str = "942d3a42f73075a7cd984082627d80832b82d8ef6253267ebe2a99edfbd765ca";

// §6.3 — pocket-core doc/specs/rpc-spec.yaml `/client/relay` example AAT (app = client key).
pub const SPEC_AAT_KEY: &str = "81068fcc400b476a332b1dcd17943cb05ffd4a3a030c6309de9bf02d8d91cd70";
pub const SPEC_AAT_SIG: &str =
    "c5923bd5a663d7bb3c990504a98008e4d32ab7c57a8689d9a494fa29274b497396cbffa9523a7acf8cdff8227b96a8bb3e2e1c1b008de32041aa86c68d0f2b08";

// §6.3 — nock-util app key and `PocketAAT.from("0.0.1", client, app)` signature.
pub const NOCK_APP_PRIV: &str =
    "15f53145bfa6efdde6e65ce5ebfd330ac0a2591ae451a8a03ace99eff894b9eed9c7f275388ca1f87900945dba7f3a90fa9bba78f158c070aa12e3eccf53a2eb";
pub const NOCK_APP_PUB: &str = "d9c7f275388ca1f87900945dba7f3a90fa9bba78f158c070aa12e3eccf53a2eb";
pub const NOCK_CLIENT_PUB: &str = "f6d04ee2490e85f3f9ade95b80948816bd9b2986d5554aae347e7d21d93b6fb5";
pub const NOCK_FROM_SIG: &str =
    "af3312f11ff31fd6377bea395e67091773ed1009207c64147ca2ad5e43294de325ec49506ab2bf450a6cb8c56ebf7933766d0ee6b5a95ed1659acf80e492ee0b";
