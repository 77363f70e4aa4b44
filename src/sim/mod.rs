//! Simulators of meshd's neighbours — the Pocket servicer ("full node") it notifies and the
//! blockchain node it relays to — for tests, benchmarks and `meshd demo`. Each runs meshd's
//! own HTTP server on a thread of its own, never on meshd's executor, and keeps all state in
//! memory.
//!
//! CLI (`meshd sim …`, see [`run_cli`]): each prints exactly one line,
//! `listening on 127.0.0.1:PORT`, then serves until the process is killed.

pub mod chain;
pub mod fullnode;
pub(crate) mod http;
pub mod node_service;
pub mod servicer;
#[cfg(test)]
pub(crate) mod testkit;

pub use chain::{start_chain, ChainHandle, ChainSimConfig, ChainStats};
pub use fullnode::{start_fullnode, FullNodeSim, FullNodeSimConfig, FullNodeStats};
pub use servicer::{start_servicer, ServicerSimConfig, ServicerStats, SimApp, SimControl, SimHandle, SimMode};

use std::io::Write;

const USAGE: &str = "usage:
  meshd sim servicer --config FILE [--listen ADDR]
  meshd sim chain [--listen ADDR] [--delay-ms N]
  meshd sim fullnode [--config FILE] [--listen ADDR]
Prints `listening on ADDR` once bound, then serves until killed.";

/// Entry point for `meshd sim <args>` (`args` excludes `meshd sim`); returns the exit code.
/// On success it never returns: the simulator serves until the process is killed.
pub fn run_cli(args: Vec<String>) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("meshd sim: {e}\n{USAGE}");
            2
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let kind = match p.next().map_err(|e| e.to_string())? {
        Some(Value(v)) => v.string().map_err(|e| e.to_string())?,
        Some(Long("help") | Short('h')) => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(other.unexpected().to_string()),
        None => return Err("missing simulator kind (servicer, chain or fullnode)".into()),
    };
    let (mut config, mut listen, mut delay_ms) = (None::<String>, None::<String>, None::<u64>);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") if kind == "servicer" || kind == "fullnode" => {
                config = Some(p.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())?)
            }
            Long("listen") => listen = Some(p.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())?),
            Long("delay-ms") if kind == "chain" => delay_ms = Some(p.value().map_err(|e| e.to_string())?.parse().map_err(|e| format!("--delay-ms: {e}"))?),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let addr = match kind.as_str() {
        "servicer" => {
            let path = config.ok_or("servicer: --config FILE is required")?;
            let mut cfg = ServicerSimConfig::load(&path)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let h = start_servicer(cfg).map_err(|e| format!("starting servicer simulator ({path}): {e}"))?;
            let addr = h.addr();
            // Serving threads live on; the handle must not be dropped (that stops them).
            std::mem::forget(h);
            addr
        }
        "chain" => {
            let mut cfg = ChainSimConfig::default();
            if let Some(l) = listen {
                cfg.listen = l;
            }
            cfg.delay_ms = delay_ms.unwrap_or(0);
            let h = start_chain(cfg).map_err(|e| format!("starting chain simulator: {e}"))?;
            let addr = h.addr();
            std::mem::forget(h);
            addr
        }
        "fullnode" => {
            let mut cfg = match &config {
                Some(path) => FullNodeSimConfig::load(path)?,
                None => FullNodeSimConfig::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let h = start_fullnode(cfg).map_err(|e| format!("starting full-node simulator: {e}"))?;
            let addr = h.addr();
            std::mem::forget(h);
            addr
        }
        other => return Err(format!("unknown simulator {other:?} (expected servicer, chain or fullnode)")),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}").and_then(|_| out.flush()).map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    // The parent (test harness, `meshd demo`) ends us with a signal.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::run_cli;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli_rejects_bad_invocations() {
        assert_eq!(run_cli(args(&[])), 2);
        assert_eq!(run_cli(args(&["validator"])), 2);
        assert_eq!(run_cli(args(&["servicer"])), 2, "--config is required");
        assert_eq!(run_cli(args(&["servicer", "--config", "/nonexistent/sim.json"])), 2);
        assert_eq!(run_cli(args(&["chain", "--delay-ms", "soon"])), 2);
        assert_eq!(run_cli(args(&["chain", "--config", "x"])), 2, "--config is servicer-only");
        assert_eq!(run_cli(args(&["chain", "--listen", "0.0.0.0:0"])), 2, "loopback only");
        assert_eq!(run_cli(args(&["fullnode", "--config", "/nonexistent/fullnode.json"])), 2);
        assert_eq!(run_cli(args(&["fullnode", "--delay-ms", "5"])), 2, "--delay-ms is chain-only");
        assert_eq!(run_cli(args(&["fullnode", "--listen", "0.0.0.0:0"])), 2, "loopback only");
        assert_eq!(run_cli(args(&["--help"])), 0);
    }
}
