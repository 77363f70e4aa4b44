//! meshd — the light half of a split Pocket node: serves relays for the servicers whose keys
//! it holds, signs them, and notifies the servicer so it can claim them. See README.md.

use std::ffi::OsString;

use meshd::exit_code::{CONFIG as EXIT_CONFIG, ENVIRONMENT as EXIT_ENVIRONMENT};
use meshd::{config, daemon, protocol};
use std::path::PathBuf;

// Exit codes (README "Exit codes", src/exit_code.rs): 0 success; 1 an environment fault a
// restart may cure (read-only or late mount, port taken, full disk, queue lock held, data dir
// removed under the daemon); 2 configuration or usage error (systemd does not restart it);
// 3 damaged queue file. A panic aborts (SIGABRT, 134).

/// A failed command: the message for stderr and the exit code it means.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn env(message: impl Into<String>) -> Failure {
        Failure { code: EXIT_ENVIRONMENT, message: message.into() }
    }
    fn queue(fault: meshd::queue::QueueFault) -> Failure {
        Failure { code: meshd::exit_code::for_queue_fault(&fault), message: fault.to_string() }
    }
}

/// Plain text errors are configuration or usage errors.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { code: EXIT_CONFIG, message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure { code: EXIT_CONFIG, message: message.into() }
    }
}

const USAGE: &str = "\
meshd — light Pocket relay node (Geo-Mesh compatible)

USAGE:
  meshd demo [--relays N]
      Start meshd with the servicer and chain simulators on loopback, send signed relays
      through it and show what happened (served, signed, notified, re-validated).
  meshd start --datadir DIR [--config FILE] [--simulate-relay]
      Serve relays. Reads DIR/config.json (or DIR/config/config.json, or FILE).
  meshd check-config --datadir DIR [--config FILE]
      Validate every file and print what would be loaded; exit 2 on any error.
  meshd queue stats|dead|replay-dead --datadir DIR [--config FILE] [--servicer ADDRESS]
      Inspect the durable relay queue (safe while the daemon runs), summarise dead letters
      by servicer and reason (`dead --limit N` lists the oldest N, `dead --show ID` one in
      full), or move dead letters back to pending. Needs no keys or token file.
  meshd address <public-key-hex | private-key-hex>
      Print the address (and public key) of an ed25519 key.
  meshd sim servicer --config FILE | meshd sim chain [--listen ADDR] [--delay-ms N]
      Run a simulator (tests and benchmarks; prints `listening on ADDR`).
  meshd --version | --help

Environment: RUST_LOG overrides log_level; BLOCKING_MAX_THREADS caps the blocking pool (default 32).
Signals (start): SIGTERM/SIGINT drain and exit 0 (a second one exits at once); SIGHUP reloads.
Exit codes: 0 success; 1 environment fault (mount, port, disk, queue lock held, data dir gone:
restart may cure it); 2 configuration or usage error; 3 damaged queue file.
";

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(run(args));
}

fn run(args: Vec<OsString>) -> i32 {
    let Some(command) = args.first().and_then(|a| a.to_str()).map(str::to_string) else {
        eprint!("{USAGE}");
        return EXIT_CONFIG;
    };
    let rest = args[1..].to_vec();
    let result = match command.as_str() {
        "start" => cmd_start(rest),
        "check-config" => cmd_check_config(rest),
        "address" => cmd_address(rest),
        "queue" => cmd_queue(rest),
        "demo" => cmd_demo(rest),
        "sim" => Ok(meshd::sim::run_cli(rest.iter().map(|a| a.to_string_lossy().into_owned()).collect())),
        "--version" | "-V" | "version" => {
            println!("meshd {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}").into()),
    };
    match result {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            eprintln!("meshd: {message}");
            code
        }
    }
}

/// Options shared by `start` and `check-config`.
struct DataDirArgs {
    datadir: PathBuf,
    config: Option<PathBuf>,
    simulate_relay: bool,
}

fn parse_datadir_args(args: Vec<OsString>, allow_simulate: bool) -> Result<DataDirArgs, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let (mut datadir, mut config, mut simulate_relay) = (None, None, false);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("datadir") => datadir = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?)),
            Long("config") => config = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?)),
            Long("simulate-relay") | Long("simulateRelay") if allow_simulate => simulate_relay = true,
            other => return Err(format!("{}\n\n{USAGE}", other.unexpected())),
        }
    }
    let datadir = datadir.ok_or_else(|| format!("--datadir DIR is required\n\n{USAGE}"))?;
    Ok(DataDirArgs { datadir, config, simulate_relay })
}

fn load_config(args: &DataDirArgs) -> Result<config::Loaded, String> {
    config::load(&args.datadir, args.config.as_deref()).map_err(|e| format!("configuration error: {e}"))
}

fn init_logging(log_level: &str) -> Result<(), String> {
    let configured = config::settings::parse_log_level(log_level).map_err(|e| format!("configuration error: log_level: {e}"))?;
    // RUST_LOG overrides log_level: a plain level (`debug`) or the same `*:debug` syntax.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().parse::<log::LevelFilter>().map_err(|_| v.clone()).or_else(|_| config::settings::parse_log_level(&v).map_err(|_| v)));
    let level = match &from_env {
        Some(Ok(level)) => *level,
        _ => configured,
    };
    // ureq's TRACE level is a wire dump that is "NOT REDACTED" (its docs): it would print the
    // servicer token in `Authorization`. HTTP client crates stop at DEBUG, whose headers ureq
    // allow-lists, whatever the level.
    let clients = level.min(log::LevelFilter::Debug);
    simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("ureq", clients)
        .with_module_level("ureq_proto", clients)
        .with_module_level("rustls", clients)
        .with_utc_timestamps()
        .init()
        .map_err(|e| format!("cannot start logging: {e}"))?;
    if let Some(Err(value)) = from_env {
        log::warn!("event=config_warning RUST_LOG={value:?} is not a log level; using log_level {log_level:?}");
    }
    Ok(())
}

/// Descriptors meshd needs besides client connections: LMDB, outbound pools, the metrics and
/// Spacemesh listeners.
const FD_RESERVE: u64 = 256;

fn cmd_start(args: Vec<OsString>) -> Result<i32, Failure> {
    let args = parse_datadir_args(args, true)?;
    let mut loaded = load_config(&args)?;
    init_logging(&loaded.settings.log_level)?;
    for warning in &loaded.warnings {
        log::warn!("event=config_warning {warning}");
    }
    if loaded.mesh_token.is_none() {
        let path = loaded.resolve(&loaded.settings.auth_token_file);
        // Cannot write the token file: a read-only or missing mount, a restart may cure it.
        let token = config::auth::create_token(&path).map_err(|e| Failure::env(e.to_string()))?;
        log::warn!("event=token_created file={} (private routes need this token in the Authorization header)", path.display());
        loaded.mesh_token = Some(token);
    }
    log::info!(
        "event=starting version={} config={} nodes={} chains={}",
        env!("CARGO_PKG_VERSION"),
        loaded.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into()),
        loaded.nodes.len(),
        loaded.chains.len()
    );
    meshd::signals::install().map_err(|e| Failure::env(format!("signals: {e}")))?;
    install_panic_policy();
    // The queue under its lock, checked against its meta pages, before anything is served.
    let queue = daemon::open_queue(&loaded).map_err(|fault| {
        log::error!("event=fatal error={:?}", fault.to_string());
        Failure::queue(fault)
    })?;
    let (soft, hard) = meshd::http::server::raise_fd_limit();
    log::info!("event=fd_limit soft={soft} hard={hard}");
    // Past the limit, accepting backs off until descriptors come back (never a crash), but
    // clients wait: say so at start.
    let wanted = loaded.settings.client_max_connections + FD_RESERVE;
    if soft < wanted {
        log::warn!("event=fd_limit_low soft={soft} wanted={wanted} (client_max_connections + {FD_RESERVE}; raise LimitNOFILE)");
    }
    // What fails after the configuration was validated is the environment (port taken, …).
    daemon::run(loaded, daemon::StartOptions { simulate_relay: args.simulate_relay, on_ready: None, queue: Some(queue) }).map_err(|e| {
        log::error!("event=fatal error={e:?}");
        Failure::env(e)
    })?;
    Ok(0)
}

/// Any panic, on any thread, ends the daemon (logged, then abort — what the release build's
/// `panic = "abort"` does anyway, now in every build). A thread that died alone would leave a
/// half-alive daemon: a listener that no longer accepts, a notifier that no longer sends.
/// systemd restarts meshd (`Restart=on-failure`), and the queue is safe: a relay is answered 200
/// only after its commit.
fn install_panic_policy() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!("event=panic thread={} {info} (aborting; queued relays are safe)", thread.name().unwrap_or("unnamed"));
        std::process::abort();
    }));
}

fn cmd_check_config(args: Vec<OsString>) -> Result<i32, Failure> {
    let args = parse_datadir_args(args, false)?;
    let loaded = load_config(&args)?;
    print!("{}", config::describe(&loaded));
    println!("configuration OK");
    Ok(0)
}

fn cmd_demo(args: Vec<OsString>) -> Result<i32, Failure> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut relays = 5usize;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("relays") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                relays = value.parse().map_err(|e| format!("--relays: {e}"))?;
                if !(1..=10_000).contains(&relays) {
                    return Err("--relays must be between 1 and 10000".into());
                }
            }
            other => return Err(format!("{}\n\n{USAGE}", other.unexpected()).into()),
        }
    }
    Ok(meshd::demo::run(relays)?)
}

fn cmd_queue(args: Vec<OsString>) -> Result<i32, Failure> {
    use meshd::queue::{cli, Durability, OpenMode, Store};
    let Some(sub) = args.first().and_then(|a| a.to_str()) else {
        return Err(format!("queue needs a subcommand: stats, dead or replay-dead\n\n{USAGE}").into());
    };
    let command = match sub {
        "stats" => cli::Command::Stats,
        "dead" => cli::Command::Dead { limit: None, show: None, datadir: String::new() },
        "replay-dead" => cli::Command::ReplayDead,
        other => return Err(format!("unknown queue subcommand {other:?} (stats, dead, replay-dead)").into()),
    };
    // Peel off --servicer, --limit and --show; leave the rest to the data-dir parser.
    let mut rest = Vec::new();
    let mut servicer = None;
    let (mut limit, mut show) = (None, None);
    let mut iter = args[1..].iter();
    while let Some(arg) = iter.next() {
        if arg == "--servicer" {
            let value = iter.next().and_then(|v| v.to_str()).ok_or("--servicer needs a 40-hex address")?;
            let mut address = [0u8; 20];
            hex::decode_to_slice(value.trim(), &mut address).map_err(|e| format!("--servicer {value:?}: not a 40-hex address: {e}"))?;
            servicer = Some(address);
        } else if arg == "--limit" || arg == "--show" {
            let name = arg.to_string_lossy().into_owned();
            let value = iter.next().and_then(|v| v.to_str()).ok_or_else(|| format!("{name} needs a number"))?;
            let n: u64 = value.trim().trim_start_matches('#').parse().map_err(|_| format!("{name} {value:?}: not a number"))?;
            if name == "--limit" {
                limit = Some(usize::try_from(n).unwrap_or(usize::MAX));
            } else {
                show = Some(n);
            }
        } else {
            rest.push(arg.clone());
        }
    }
    let args = parse_datadir_args(rest, false)?;
    let command = match command {
        cli::Command::Dead { .. } => cli::Command::Dead { limit, show, datadir: args.datadir.display().to_string() },
        _ if limit.is_some() || show.is_some() => return Err("--limit and --show apply to `meshd queue dead` only".into()),
        other => other,
    };
    // Settings only: the queue commands need neither the keys file nor the token files.
    let (s, data_dir) = config::load_settings(&args.datadir, args.config.as_deref()).map_err(|e| format!("configuration error: {e}"))?;
    let dir = config::resolve_in(&data_dir, &s.relay_queue_dir);
    // Reading commands open read-only and never create a queue where there is none.
    let mode = match command {
        cli::Command::ReplayDead => {
            if !dir.join("data.mdb").is_file() {
                return Err(Failure::queue(meshd::queue::QueueFault::NoQueue { dir }));
            }
            OpenMode::Shared
        }
        _ => OpenMode::ReadOnly,
    };
    let store = Store::open_as(&dir, s.relay_queue_map_size, Durability::Sync, mode).map_err(Failure::queue)?;
    let out = cli::run(&store, command, servicer).map_err(Failure::env)?;
    print!("{out}");
    Ok(0)
}

fn cmd_address(args: Vec<OsString>) -> Result<i32, Failure> {
    let [key] = args.as_slice() else {
        return Err(format!("address takes exactly one hex key\n\n{USAGE}").into());
    };
    let key = key.to_str().ok_or("the key must be hex text")?.trim();
    let public = match key.len() {
        64 => {
            let mut public = [0u8; 32];
            hex::decode_to_slice(key, &mut public).map_err(|e| format!("public key: invalid hex: {e}"))?;
            public
        }
        128 => protocol::KeyPair::from_hex(key).map_err(|e| format!("private key: {e}"))?.public_bytes(),
        n => return Err(format!("expected a 64-hex public key or a 128-hex private key, got {n} characters").into()),
    };
    println!("address    {}", hex::encode(protocol::address_of(&public)));
    println!("public_key {}", hex::encode(public));
    Ok(0)
}
