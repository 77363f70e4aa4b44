//! meshd — the light half of a split Pocket node: serves relays for the servicers whose keys
//! it holds, signs them, and notifies the servicer so it can claim them. See README.md.

use std::ffi::OsString;

use meshd::exit_code::{CONFIG as EXIT_CONFIG, ENVIRONMENT as EXIT_ENVIRONMENT};
use meshd::{config, daemon, protocol};
use std::path::PathBuf;

// Exit codes (docs/deploy.md, src/exit_code.rs): 0 success; 1 an environment fault a
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
  meshd demo --shannon [--relays N] [--redis URL]
      The same for a Shannon supplier: full-node and chain simulators, a local Redis; ring-signed
      relays, supplier signatures verified, mined relays shown in the Redis streams.
  meshd start --datadir DIR [--config FILE] [--simulate-relay]
      Serve relays. Reads DIR/config.json (or DIR/config/config.json, or FILE).
  meshd check-config --datadir DIR [--config FILE] [--probe]
      Validate every file and print what would be loaded; exit 2 on any error.
  meshd relay --to URL --app-key HEX --servicer PUBKEY --chain ID [options]
      Send one signed relay (printed first) and verify the servicer signature of the answer.
  meshd queue stats|dead|replay-dead --datadir DIR [--config FILE] [--servicer ADDRESS]
      Inspect the durable relay queue (safe while the daemon runs), summarise dead letters
      by servicer and reason (`dead --limit N` lists the oldest N, `dead --show ID` one in
      full), or move dead letters back to pending (`replay-dead --shannon`: the Shannon
      mined relays instead). Needs no keys or token file.
  meshd queue salvage --datadir DIR [--config FILE] [--to NEWDIR]
      Copy every readable record of a damaged queue into a fresh queue and report the rest.
  meshd address <public-key-hex | private-key-hex>
      Print the address (and public key) of an ed25519 key (Morse).
  meshd address --shannon <private-key-hex | compressed-public-key-hex>
      Print the pokt1… address (and public key) of a secp256k1 supplier operator key.
  meshd sim servicer --config FILE | meshd sim chain [--listen ADDR] [--delay-ms N]
  meshd sim fullnode [--config FILE] [--listen ADDR]
      Run a simulator (tests and benchmarks; prints `listening on ADDR`).
  meshd --version | --help | <command> --help

Environment: RUST_LOG overrides log_level; BLOCKING_MAX_THREADS caps the blocking pool (default 2).
Signals (start): SIGTERM/SIGINT drain and exit 0 (a second one exits at once); SIGHUP reloads.
Exit codes: 0 success; 1 environment fault (mount, port, disk, queue lock held, data dir gone:
restart may cure it); 2 configuration or usage error; 3 damaged queue file.
";

/// `meshd <command> --help`: the command's own usage (None: an unknown command).
fn command_help(command: &str) -> Option<&'static str> {
    Some(match command {
        "demo" => {
            "\
meshd demo [--relays N]
  Start a servicer simulator, a chain simulator and meshd on loopback (temporary data dir),
  print the first relay request it sends, send N signed relays (default 5, at most 10000),
  verify every signature, then show a duplicate (37) and a tampered relay (74) refused and all
  relays notified to and re-validated by the servicer simulator. Exit 0 when all of that holds.
meshd demo --shannon [--relays N] [--redis URL]
  Shannon supplier edge: start a full-node simulator, a chain simulator (the service backend)
  and meshd in Shannon mode (temporary data dir), with a local Redis: --redis URL, else
  redis://127.0.0.1:6379 if it answers, else a redis-server started on a free loopback port
  (none installed: exit 1, `apt-get install redis-server`). Print the first relay request
  decoded, send N ring-signed relays, verify each supplier signature and print the backend
  answer, show a replay refused, then the mined relays in the supplier streams (decoded
  MinedRelayMessage) and the consumer-group commands a miner uses. Exit 0 when all of that holds.
"
        }
        "start" => {
            "\
meshd start --datadir DIR [--config FILE] [--simulate-relay]
  Serve relays for the keys in DIR. Reads DIR/config.json, else DIR/config/config.json, else
  FILE. --simulate-relay answers POST /v1/client/sim (chain call without a relay).
  Exit codes: 0 graceful stop; 1 environment fault (port taken, read-only mount, queue lock
  held…: systemd restarts it); 2 configuration error; 3 damaged queue file.
"
        }
        "check-config" => {
            "\
meshd check-config --datadir DIR [--config FILE] [--probe]
  Load every file `start` would (config, keys, chains, auth tokens) and print the nodes,
  addresses, chains and listeners; exit 2 naming the file and key on any error.
  --probe  also call each servicer URL's check, session and relay routes with the token
           and each chain endpoint once (eth_blockNumber), one line per URL with the token
           verdict and the height; exit 1 when any of them fails.
"
        }
        "relay" => {
            "\
meshd relay --to URL --app-key HEX --servicer PUBKEY --chain ID [options]
  Build one relay like pocket-js (AAT, request hash, client signature), print it, POST it to
  URL/v1/client/relay and verify the servicer's signature over the answer. Exit 0 when the
  answer is 200 and the signature is valid, 1 otherwise.
  --to URL                 meshd relay port, e.g. http://127.0.0.1:8081
  --app-key HEX            the staked app's private key (128 hex)
  --client-key HEX         client key the AAT authorises (default: the app key)
  --servicer PUBKEY        the servicer's public key (64 hex), as in its session
  --chain ID               relay chain id, e.g. 0021
  --session-height N       default: from POST URL/v1/query/height and --blocks-per-session
  --blocks-per-session N   default 4
  --data TEXT              chain request body (default: an eth_blockNumber JSON-RPC call)
  --method M, --path P     HTTP method (default POST) and path for the chain call
  --timeout-ms N           default 10000
"
        }
        "queue" => {
            "\
meshd queue stats|dead|replay-dead --datadir DIR [--config FILE] [--servicer ADDRESS]
  stats        pending relays, dead letters, space used, per servicer address
  dead         dead letters with their reasons
  replay-dead  move dead letters back to pending (e.g. after fixing the servicer)
  --servicer restricts dead and replay-dead to one 40-hex address. Safe while meshd runs.
  Shannon mode: stats and dead include the mined relays waiting for (or refused by) the Redis
  hand-off; `replay-dead --shannon` moves the refused ones back to pending.

meshd queue salvage --datadir DIR [--config FILE] [--to NEWDIR]
  For a damaged queue file (exit 3): copy every readable record (pending relays, dead letters,
  duplicate index, identity states, Spacemesh publishes) into a fresh queue at NEWDIR (default
  <queue dir>.salvaged-<unix time>), and report what could not be read. The damaged file is
  only read (a copy is walked, in a child process, so a crash keeps what was saved). Prints how
  to swap the salvaged queue in. Exit 0 when the walk ended (even with unreadable records),
  3 when the file cannot be opened at all or the walk process died (what it committed is
  kept), 1 when NEWDIR cannot be written, 2 when NEWDIR exists and is not empty.
"
        }
        "address" => {
            "\
meshd address <public-key-hex | private-key-hex>
  Print the address and public key of an ed25519 key (64 hex public, or 128 hex private key).
meshd address --shannon <private-key-hex | compressed-public-key-hex>
  Print the pokt1… address and compressed public key of a secp256k1 supplier operator key
  (64 hex private key, as in the supplier keys file, or 66 hex compressed public key).
"
        }
        "sim" => {
            "\
meshd sim servicer --config FILE [--listen ADDR]
meshd sim chain [--listen ADDR] [--delay-ms N]
meshd sim fullnode [--config FILE] [--listen ADDR]
  Run a simulator on loopback; prints `listening on ADDR`, then serves until killed.
  The servicer config is JSON (docs/simulators.md): listen, auth_token, height,
  blocks_per_session, client_session_sync_allowance, client_block_sync_allowance,
  session_node_count, service_url, servicers (public keys), chains, apps
  [{public_key, chains, max_relays}], version. Unknown fields are errors.
  The fullnode (Shannon full node REST) config is JSON too: listen, height, params,
  services [{id, target_hash_hex, compute_units_per_relay}], applications [{address,
  delegatee_gateway_addresses, pending_undelegations}], accounts [{address, pubkey_hex}],
  suppliers [{operator_address, services}].
"
        }
        _ => return None,
    })
}

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
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        if let Some(help) = command_help(&command) {
            print!("{help}");
            return 0;
        }
    }
    let result = match command.as_str() {
        "relay" => cmd_relay(rest),
        "start" => cmd_start(rest),
        "check-config" => cmd_check_config(rest),
        "address" => cmd_address(rest),
        "queue" => cmd_queue(rest),
        #[cfg(feature = "tools")]
        "demo" => cmd_demo(rest),
        #[cfg(feature = "tools")]
        "sim" => Ok(meshd::sim::run_cli(rest.iter().map(|a| a.to_string_lossy().into_owned()).collect())),
        #[cfg(not(feature = "tools"))]
        "demo" | "sim" => Err(format!("`meshd {command}` is not in this build (a board build without the `tools` feature, docs/deploy.md); run it from a default build (`cargo run --release -- {command}`)").into()),
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
    let logger = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("ureq", clients)
        .with_module_level("ureq_proto", clients)
        .with_module_level("rustls", clients)
        .with_utc_timestamps();
    // Every line is masked with the configured secrets (README "What never leaves meshd").
    log::set_max_level(logger.max_level());
    log::set_boxed_logger(Box::new(meshd::ops::redact::MaskingLogger { inner: logger })).map_err(|e| format!("cannot start logging: {e}"))?;
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
    // hyper's server formats its `Date` header with `httpdate`, which panics on a clock before
    // 1970 (a board without RTC before NTP): refuse to start instead, as an environment fault
    // that systemd retries until the clock is set (README "Known limits").
    if std::time::SystemTime::now() < std::time::UNIX_EPOCH {
        return Err(Failure::env("the wall clock reads before 1970; start meshd after the clock is set (time sync)"));
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

fn cmd_check_config(mut args: Vec<OsString>) -> Result<i32, Failure> {
    let probe = args.len() != {
        args.retain(|a| a != "--probe");
        args.len()
    };
    let args = parse_datadir_args(args, false)?;
    let mut loaded = load_config(&args)?;
    // Security findings are warnings: the configuration is usable, but see docs/deploy.md
    // "What never leaves meshd".
    loaded.warnings.extend(config::audit::audit(&loaded));
    print!("{}", config::describe(&loaded));
    println!("configuration OK");
    if probe {
        // Reachability is the environment's, not the configuration's: exit 1 when a probe fails.
        let report = meshd::ops::probe::run(&loaded);
        for line in &report.lines {
            println!("{line}");
        }
        if !report.all_ok {
            println!("probe: some servicer or chain endpoints failed (see above)");
            return Ok(meshd::exit_code::ENVIRONMENT);
        }
        println!("probe: every servicer and chain endpoint answered");
    }
    Ok(0)
}

#[cfg(feature = "tools")]
fn cmd_demo(args: Vec<OsString>) -> Result<i32, Failure> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut relays = 5usize;
    let (mut shannon, mut redis) = (false, None);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("shannon") => shannon = true,
            Long("redis") => redis = Some(parser.value().map_err(|e| e.to_string())?.into_string().map_err(|_| "--redis: not UTF-8")?),
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
    if shannon {
        // What fails now is the environment (no Redis, ports), not the arguments.
        return meshd::shannon_demo::run(relays, redis.as_deref()).map_err(Failure::env);
    }
    if redis.is_some() {
        return Err("--redis applies to `meshd demo --shannon` only".into());
    }
    Ok(meshd::demo::run(relays)?)
}

fn cmd_relay(args: Vec<OsString>) -> Result<i32, Failure> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let (mut to, mut app_key, mut client_key, mut servicer, mut chain) = (None, None, None, None, None);
    let (mut session_height, mut blocks_per_session, mut timeout_ms) = (None, 4i64, 10_000u64);
    let mut data = r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#.to_string();
    let (mut method, mut path) = ("POST".to_string(), String::new());
    let text = |parser: &mut lexopt::Parser, name: &str| -> Result<String, String> {
        parser.value().map_err(|e| e.to_string())?.into_string().map_err(|_| format!("--{name}: not UTF-8"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("to") => to = Some(text(&mut parser, "to")?),
            Long("app-key") => app_key = Some(text(&mut parser, "app-key")?),
            Long("client-key") => client_key = Some(text(&mut parser, "client-key")?),
            Long("servicer") => servicer = Some(text(&mut parser, "servicer")?),
            Long("chain") => chain = Some(text(&mut parser, "chain")?),
            Long("session-height") => session_height = Some(text(&mut parser, "session-height")?.parse().map_err(|e| format!("--session-height: {e}"))?),
            Long("blocks-per-session") => {
                blocks_per_session = text(&mut parser, "blocks-per-session")?.parse().map_err(|e| format!("--blocks-per-session: {e}"))?;
                if blocks_per_session < 1 {
                    return Err("--blocks-per-session must be at least 1".into());
                }
            }
            Long("timeout-ms") => timeout_ms = text(&mut parser, "timeout-ms")?.parse().map_err(|e| format!("--timeout-ms: {e}"))?,
            Long("data") => data = text(&mut parser, "data")?,
            Long("method") => method = text(&mut parser, "method")?,
            Long("path") => path = text(&mut parser, "path")?,
            other => return Err(format!("{}\n\n{}", other.unexpected(), command_help("relay").unwrap_or_default()).into()),
        }
    }
    let required = |value: Option<String>, name: &str| value.ok_or_else(|| format!("relay: --{name} is required (meshd relay --help)"));
    let args = meshd::relay_cmd::RelayArgs {
        to: required(to, "to")?,
        app_key: required(app_key, "app-key")?,
        client_key,
        servicer: required(servicer, "servicer")?,
        chain: required(chain, "chain")?,
        session_height,
        blocks_per_session,
        data,
        method,
        path,
        timeout: std::time::Duration::from_millis(timeout_ms.clamp(1, 600_000)),
    };
    // Arguments were checked; what fails now is the network (or the answer, exit 1 too).
    match meshd::relay_cmd::run(&args) {
        Ok(code) => Ok(code),
        Err(e) if e.starts_with("--") => Err(e.into()),
        Err(e) => Err(Failure::env(e)),
    }
}

fn cmd_queue(args: Vec<OsString>) -> Result<i32, Failure> {
    use meshd::queue::{cli, Durability, OpenMode, Store};
    let Some(sub) = args.first().and_then(|a| a.to_str()) else {
        return Err(format!("queue needs a subcommand: stats, dead, replay-dead or salvage\n\n{USAGE}").into());
    };
    let command = match sub {
        "stats" => cli::Command::Stats,
        "dead" => cli::Command::Dead { limit: None, show: None, datadir: String::new() },
        "replay-dead" => cli::Command::ReplayDead,
        "salvage" => return cmd_queue_salvage(args[1..].to_vec()),
        "salvage-walk" => return cmd_queue_salvage_walk(args[1..].to_vec()),
        other => return Err(format!("unknown queue subcommand {other:?} (stats, dead, replay-dead, salvage)").into()),
    };
    // Peel off --servicer, --limit and --show; leave the rest to the data-dir parser.
    let mut rest = Vec::new();
    let mut servicer = None;
    let mut shannon = false;
    let (mut limit, mut show) = (None, None);
    let mut iter = args[1..].iter();
    while let Some(arg) = iter.next() {
        if arg == "--servicer" {
            let value = iter.next().and_then(|v| v.to_str()).ok_or("--servicer needs a 40-hex address")?;
            let mut address = [0u8; 20];
            hex::decode_to_slice(value.trim(), &mut address).map_err(|e| format!("--servicer {value:?}: not a 40-hex address: {e}"))?;
            servicer = Some(address);
        } else if arg == "--shannon" {
            shannon = true;
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
        cli::Command::ReplayDead if shannon => cli::Command::ReplayDeadShannon,
        _ if shannon => return Err("--shannon applies to `meshd queue replay-dead` only".into()),
        other => other,
    };
    // Settings only: the queue commands need neither the keys file nor the token files.
    let (s, data_dir) = config::load_settings(&args.datadir, args.config.as_deref()).map_err(|e| format!("configuration error: {e}"))?;
    let dir = config::resolve_in(&data_dir, &s.relay_queue_dir);
    // Reading commands open read-only and never create a queue where there is none.
    let mode = match command {
        cli::Command::ReplayDead | cli::Command::ReplayDeadShannon => {
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

/// `meshd queue salvage` (src/queue/salvage.rs): the walk runs in a child process.
fn cmd_queue_salvage(args: Vec<OsString>) -> Result<i32, Failure> {
    let mut rest = Vec::new();
    let mut to = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--to" {
            to = Some(PathBuf::from(iter.next().ok_or("--to needs a directory")?));
        } else {
            rest.push(arg);
        }
    }
    let args = parse_datadir_args(rest, false)?;
    let loaded = load_config(&args)?;
    let dir = loaded.resolve(&loaded.settings.relay_queue_dir);
    let exe = std::env::current_exe().map_err(|e| Failure::env(format!("cannot find the meshd executable for the walk process: {e}")))?;
    let (code, report) =
        meshd::queue::salvage::run(&exe, &dir, to, loaded.settings.relay_queue_map_size).map_err(|f| Failure { code: f.code, message: f.message })?;
    print!("{}", report.render());
    Ok(code)
}

/// The hidden child of `meshd queue salvage`: walks a scratch copy of a damaged queue.
fn cmd_queue_salvage_walk(args: Vec<OsString>) -> Result<i32, Failure> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let (mut source, mut to, mut map_mib, mut scan) = (None, None, 64u64, false);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("source") => source = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?)),
            Long("to") => to = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?)),
            Long("scan") => scan = true,
            Long("map-mib") => {
                map_mib = parser.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())?.parse().map_err(|e| format!("--map-mib: {e}"))?
            }
            other => return Err(other.unexpected().to_string().into()),
        }
    }
    let (Some(source), Some(to)) = (source, to) else {
        return Err("salvage-walk needs --source and --to".into());
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    Ok(meshd::queue::salvage::walk(&source, &to, map_mib, scan, &mut out))
}

fn cmd_address(args: Vec<OsString>) -> Result<i32, Failure> {
    let (shannon, key) = match args.as_slice() {
        [key] => (false, key),
        [flag, key] if flag == "--shannon" => (true, key),
        _ => return Err(format!("address takes one hex key, optionally after --shannon\n\n{USAGE}").into()),
    };
    let key = key.to_str().ok_or("the key must be hex text")?.trim();
    if shannon {
        // A Shannon supplier operator key (supplier_keys_file) or a compressed public key.
        let public = match key.len() {
            64 => *meshd::shannon::keys::OperatorKey::from_hex(key).map_err(|e| format!("secp256k1 private key: {e}"))?.pubkey(),
            66 => {
                let mut public = [0u8; 33];
                hex::decode_to_slice(key, &mut public).map_err(|e| format!("public key: invalid hex: {e}"))?;
                meshd::shannon::keys::parse_pubkey(&public).map_err(|e| format!("public key: {e}"))?;
                public
            }
            n => return Err(format!("expected a 64-hex secp256k1 private key or a 66-hex compressed public key, got {n} characters").into()),
        };
        println!("address    {}", meshd::shannon::keys::address_of(&public));
        println!("public_key {}", hex::encode(public));
        return Ok(0);
    }
    let public = match key.len() {
        64 => {
            let mut public = [0u8; 32];
            hex::decode_to_slice(key, &mut public).map_err(|e| format!("public key: invalid hex: {e}"))?;
            public
        }
        128 => protocol::KeyPair::from_hex(key).map_err(|e| format!("private key: {e}"))?.public_bytes(),
        n => return Err(format!("expected a 64-hex public key or a 128-hex private key, got {n} characters (a Shannon key: add --shannon)").into()),
    };
    println!("address    {}", hex::encode(protocol::address_of(&public)));
    println!("public_key {}", hex::encode(public));
    Ok(0)
}
