//! The servicer fleet meshd signs for: node entries (servicer full nodes) and the
//! servicer keys each owns, indexed by public key for the relay path.

use std::collections::HashMap;

use crate::config::NodeEntry;
use crate::protocol::KeyPair;

/// A servicer full node as meshd talks to it.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub urls: Vec<String>,
    /// Addresses (hex) of the servicers this node owns, sent in every check.
    pub addresses: Vec<String>,
    /// The same addresses as bytes: the queue's per-servicer key prefixes.
    pub address_bytes: Vec<[u8; 20]>,
}

impl Node {
    /// The URL currently used for this node (failover between several URLs is issue C).
    pub fn url(&self) -> &str {
        &self.urls[0]
    }
}

/// One servicer identity and the node that claims its relays.
#[derive(Debug)]
pub struct Servicer {
    pub key: KeyPair,
    pub node: usize,
}

#[derive(Debug, Default)]
pub struct Fleet {
    pub nodes: Vec<Node>,
    by_public_key: HashMap<[u8; 32], Servicer>,
}

impl Fleet {
    pub fn new(entries: &[NodeEntry]) -> Fleet {
        let mut fleet = Fleet::default();
        for (index, entry) in entries.iter().enumerate() {
            let mut addresses = Vec::with_capacity(entry.keys.len());
            let mut address_bytes = Vec::with_capacity(entry.keys.len());
            for key in &entry.keys {
                addresses.push(key.address_hex.clone());
                address_bytes.push(crate::protocol::address_of(&key.public_bytes()));
                fleet.by_public_key.insert(key.public_bytes(), Servicer { key: key.clone(), node: index });
            }
            fleet.nodes.push(Node { name: entry.name.clone(), urls: entry.urls.clone(), addresses, address_bytes });
        }
        fleet
    }

    pub fn servicer(&self, public_key: &[u8; 32]) -> Option<&Servicer> {
        self.by_public_key.get(public_key)
    }

    pub fn servicer_count(&self) -> usize {
        self.by_public_key.len()
    }
}
