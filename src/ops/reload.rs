//! Hot reload of the servicer keys and the chains (with the chain-name map), every
//! `keys_hot_reload_interval` / `chains_hot_reload_interval` ms (0 disables) and on demand
//! ([`request_reload`], e.g. from a SIGHUP handler through a [`ReloadHandle`]).
//!
//! Reloads are diff-based: `Fleet::rebuild` keeps every node that shares a URL with its new
//! entry (health, URL states, notifier dispatcher; sessions are per servicer and always kept),
//! starts tasks for new nodes and retires removed ones. A removed node's queued relays stay in
//! LMDB — they are keyed by servicer address — and are notified as soon as a node owns that
//! address again; the health route reports them as orphaned meanwhile.
//!
//! A broken file never stops meshd (the incumbent `log.Fatal`s): the previous set keeps
//! running, the error is logged with the file and entry, and `reload_failures` is counted —
//! once per broken content, so an unfixed file does not flood the log every interval.
//! All reloads run on one task, so they never overlap; `updatechains` takes the chains lock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_listener::Event;
use serde_json::{json, Value};

use crate::app::{App, Counters};
use crate::config::{chains, keys, Loaded};
use crate::relay::chain::ChainSet;

/// Requests a reload of keys and chains. `Send + Sync`: a signal thread may hold one.
#[derive(Clone, Default)]
pub struct ReloadHandle(Arc<HandleInner>);

#[derive(Default)]
struct HandleInner {
    requested: AtomicBool,
    event: Event,
}

impl ReloadHandle {
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    fn take(&self) -> bool {
        self.0.requested.swap(false, Ordering::SeqCst)
    }
}

/// Reload keys and chains now (on the reload task, soon after this returns).
pub fn request_reload(app: &App) {
    app.reload.handle().request();
}

#[derive(Debug, Clone)]
struct Outcome {
    at: SystemTime,
    ok: bool,
    message: String,
}

#[derive(Default)]
struct Files {
    /// Content of the file the running set was built from (or found identical to it).
    applied: Option<Vec<u8>>,
    /// Content last refused (not reported again by interval reloads).
    refused: Option<Vec<u8>>,
    last: Option<Outcome>,
}

/// Reload state kept in `App`.
pub struct Reloader {
    handle: ReloadHandle,
    keys_path: PathBuf,
    chains_path: PathBuf,
    names_path: Option<PathBuf>,
    remote_names_url: String,
    keys: RefCell<Files>,
    chains: RefCell<Files>,
    /// The Shannon supplier keys file (`shannon.supplier_keys_file`), when Shannon mode is on.
    supplier_keys_path: Option<PathBuf>,
    supplier_keys: RefCell<Files>,
    names: RefCell<Option<Outcome>>,
    /// Last good remote name map: a failed fetch keeps using it.
    remote_names: RefCell<BTreeMap<String, String>>,
    chains_lock: smol::lock::Mutex<()>,
}

impl Reloader {
    pub fn new(loaded: &Loaded) -> Reloader {
        let s = &loaded.settings;
        Reloader {
            handle: ReloadHandle::default(),
            keys_path: loaded.resolve(&s.servicer_private_key_file),
            chains_path: loaded.resolve(&s.chains_name),
            names_path: (!s.chains_name_map.is_empty()).then(|| loaded.resolve(&s.chains_name_map)),
            remote_names_url: s.remote_chains_name_map.clone(),
            keys: RefCell::default(),
            chains: RefCell::default(),
            supplier_keys_path: loaded.shannon.as_ref().map(|sh| loaded.resolve(&sh.supplier_keys_file)),
            supplier_keys: RefCell::default(),
            names: RefCell::default(),
            remote_names: RefCell::default(),
            chains_lock: smol::lock::Mutex::new(()),
        }
    }

    /// A handle other threads (signal handling) can use to request a reload.
    pub fn handle(&self) -> ReloadHandle {
        self.handle.clone()
    }

    /// Held while chains are read and swapped, so a reload and `updatechains` never interleave.
    pub async fn chains_lock(&self) -> smol::lock::MutexGuard<'_, ()> {
        self.chains_lock.lock().await
    }

    /// `updatechains` rewrote the chains file with `bytes` and swapped the set in.
    pub fn note_chains_written(&self, bytes: Vec<u8>) {
        let mut files = self.chains.borrow_mut();
        files.applied = Some(bytes);
        files.refused = None;
        files.last = Some(Outcome { at: SystemTime::now(), ok: true, message: "rewritten by updatechains".into() });
    }

    /// Last outcomes, for the health route.
    pub fn status_json(&self) -> Value {
        fn show(o: &Option<Outcome>) -> Value {
            match o {
                None => Value::Null,
                Some(o) => json!({
                    "ok": o.ok,
                    "at_unix_ms": o.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                    "message": o.message,
                }),
            }
        }
        json!({
            "keys": show(&self.keys.borrow().last),
            "chains": show(&self.chains.borrow().last),
            "chain_names": show(&self.names.borrow()),
            "supplier_keys": show(&self.supplier_keys.borrow().last),
        })
    }
}

/// The reload task: interval reloads and requested ones, one at a time, for the daemon's life.
pub async fn reload_loop(app: Rc<App>, ex: &'static smol::LocalExecutor<'static>) {
    let every = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    let keys_every = every(app.settings.keys_hot_reload_interval);
    let chains_every = every(app.settings.chains_hot_reload_interval);
    // The remote name map is not fetched at startup (that would delay serving): fetch it now.
    if !app.reload.remote_names_url.is_empty() {
        reload_names(&app).await;
    }
    let mut next_keys = keys_every.map(|d| Instant::now() + d);
    let mut next_chains = chains_every.map(|d| Instant::now() + d);
    loop {
        let listener = app.reload.handle.0.event.listen();
        if app.reload.handle.take() {
            log::info!("event=reload_requested");
            reload_keys(&app, ex, "request").await;
            reload_supplier_keys(&app, "request").await;
            reload_chains(&app, "request").await;
            continue;
        }
        match next_keys.into_iter().chain(next_chains).min() {
            Some(at) => {
                futures_lite::future::or(listener, async {
                    async_io::Timer::at(at).await;
                })
                .await
            }
            None => listener.await,
        }
        let now = Instant::now();
        if let (Some(at), Some(d)) = (next_keys, keys_every) {
            if at <= now {
                reload_keys(&app, ex, "interval").await;
                reload_supplier_keys(&app, "interval").await;
                next_keys = Some(Instant::now() + d);
            }
        }
        if let (Some(at), Some(d)) = (next_chains, chains_every) {
            if at <= now {
                reload_chains(&app, "interval").await;
                next_chains = Some(Instant::now() + d);
            }
        }
    }
}

/// Decode file bytes as config text (UTF-8, leading BOM dropped).
fn text_of(bytes: &[u8], path: &Path) -> Result<String, crate::config::ConfigError> {
    crate::config::file::text_of(bytes.to_vec(), path)
}

/// What reading and parsing a file gave.
enum Read<T> {
    /// Same content as the running set: nothing to do.
    Unchanged,
    /// Same broken content as last time, already reported.
    StillBroken,
    Parsed(T, Vec<u8>),
    Broken(String, Vec<u8>),
}

async fn read_and_parse<T: Send + 'static>(
    files: &RefCell<Files>,
    path: &Path,
    forced: bool,
    parse: fn(&str, &Path) -> Result<T, crate::config::ConfigError>,
    limit: u64,
) -> Read<T> {
    let p = path.to_path_buf();
    // Bounded: a device, FIFO or oversized file is refused (the running set is kept), never read.
    let bytes = match smol::unblock(move || crate::config::file::read_bounded(&p, limit)).await {
        Ok(bytes) => bytes,
        Err(e) => return Read::Broken(e.to_string(), Vec::new()),
    };
    {
        let f = files.borrow();
        if f.applied.as_deref() == Some(&bytes[..]) {
            return Read::Unchanged;
        }
        if !forced && f.refused.as_deref() == Some(&bytes[..]) {
            return Read::StillBroken;
        }
    }
    let p = path.to_path_buf();
    smol::unblock(move || match text_of(&bytes, &p).and_then(|text| parse(&text, &p)) {
        Ok(parsed) => Read::Parsed(parsed, bytes),
        Err(e) => Read::Broken(e.to_string(), bytes),
    })
    .await
}

/// The reload read path meets hostile files: each is refused (the caller keeps the running set),
/// promptly and without reading it whole.
#[cfg(test)]
mod bounded_read_tests {
    use super::*;
    use crate::config::file::{CONFIG_FILE_LIMIT, KEYS_FILE_LIMIT};

    fn read_within_5s(path: PathBuf, limit: u64) -> Read<Vec<keys::NodeEntry>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let files = RefCell::new(Files { applied: Some(b"[]".to_vec()), ..Files::default() });
            let _ = tx.send(smol::block_on(read_and_parse(&files, &path, true, keys::parse_keys, limit)));
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("the reload read blocked for 5 s")
    }

    fn broken(r: Read<Vec<keys::NodeEntry>>) -> String {
        match r {
            Read::Broken(message, bytes) => {
                assert!(bytes.is_empty(), "nothing is kept of a refused file");
                message
            }
            _ => panic!("expected the file to be refused"),
        }
    }

    #[test]
    fn a_fifo_dev_zero_or_oversized_keys_file_is_refused_not_read() {
        let dir = std::env::temp_dir().join(format!("meshd-reload-bounded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let fifo = dir.join("fifo-keys.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let m = broken(read_within_5s(fifo, KEYS_FILE_LIMIT));
        assert!(m.contains("fifo-keys.json") && m.contains("a FIFO"), "{m}");

        let zero = dir.join("zero-keys.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let m = broken(read_within_5s(zero, KEYS_FILE_LIMIT));
        assert!(m.contains("zero-keys.json") && m.contains("character device"), "{m}");

        let big = dir.join("big-chains.json");
        std::fs::File::create(&big).unwrap().set_len(CONFIG_FILE_LIMIT + 1).unwrap();
        let m = broken(read_within_5s(big, CONFIG_FILE_LIMIT));
        assert!(m.contains("big-chains.json") && m.contains("4 MiB limit"), "{m}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn refuse(app: &App, files: &RefCell<Files>, kind: &str, trigger: &str, error: String, bytes: Vec<u8>, keeping: String) {
    Counters::inc(&app.counters.reload_failures);
    log::error!("event=reload_failed kind={kind} trigger={trigger} error={error:?} (keeping {keeping})");
    let mut f = files.borrow_mut();
    // An unreadable file (no bytes) is reported again next time: it may have been mid-replace.
    f.refused = (!bytes.is_empty()).then_some(bytes);
    f.last = Some(Outcome { at: SystemTime::now(), ok: false, message: error });
}

fn accept(files: &RefCell<Files>, bytes: Vec<u8>, message: String) {
    let mut f = files.borrow_mut();
    f.applied = Some(bytes);
    f.refused = None;
    f.last = Some(Outcome { at: SystemTime::now(), ok: true, message });
}

/// Re-read the keys file and apply the difference. `trigger`: "interval" or "request".
pub async fn reload_keys(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>, trigger: &str) {
    let reloader = &app.reload;
    // A Spacemesh- or Shannon-only host has no Pocket keys file (config/mod.rs `pocket_optional`).
    if app.fleet().nodes.is_empty() && (app.spacemesh.borrow().is_some() || app.shannon.borrow().is_some()) && !reloader.keys_path.exists() {
        return;
    }
    let read = read_and_parse(&reloader.keys, &reloader.keys_path, trigger != "interval", keys::parse_keys, crate::config::file::KEYS_FILE_LIMIT).await;
    let (entries, bytes) = match read {
        Read::Unchanged | Read::StillBroken => return,
        Read::Broken(error, bytes) => {
            let fleet = app.fleet();
            let keeping = format!("the previous {} nodes and {} servicers", fleet.nodes.len(), fleet.servicer_count());
            return refuse(app, &reloader.keys, "keys", trigger, error, bytes, keeping);
        }
        Read::Parsed(entries, bytes) => (entries, bytes),
    };
    let old = app.fleet();
    let (fleet, changes) = old.rebuild(&entries);
    if changes.is_empty() {
        accept(&reloader.keys, bytes, format!("unchanged: {} nodes, {} servicers", fleet.nodes.len(), fleet.servicer_count()));
        return;
    }
    let fleet = Rc::new(fleet);
    app.set_fleet(fleet.clone());
    for node in &changes.removed {
        node.rt.retire();
    }
    for node in &changes.added {
        crate::daemon::start_node(app, ex, node.id());
    }
    // Kept nodes may have gained addresses with relays waiting: let their dispatchers look now.
    for node in &fleet.nodes {
        app.notifier.wake(node);
    }
    Counters::inc(&app.counters.reloads);
    let names = |nodes: &[Rc<crate::servicer::fleet::Node>]| nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    let message = format!(
        "{} nodes, {} servicers; added {:?}, removed {:?}, changed {:?}, {} unchanged; addresses +{} -{}",
        fleet.nodes.len(),
        fleet.servicer_count(),
        names(&changes.added),
        names(&changes.removed),
        changes.changed,
        changes.unchanged,
        changes.addresses_added,
        changes.addresses_removed
    );
    log::info!("event=keys_reloaded trigger={trigger} {message}");
    accept(&reloader.keys, bytes, message);
    if changes.addresses_removed > 0 {
        log_orphans(app, &fleet).await;
    }
}

/// Re-read the Shannon supplier keys file and swap in the new set (added suppliers serve at
/// once; a removed supplier's mined relays stay queued and are still handed off: the stream is
/// per supplier, the hand-off needs no key).
pub async fn reload_supplier_keys(app: &Rc<App>, trigger: &str) {
    let (Some(path), Some(edge)) = (app.reload.supplier_keys_path.clone(), app.shannon.borrow().clone()) else { return };
    let files = &app.reload.supplier_keys;
    let read = read_and_parse(files, &path, trigger != "interval", crate::config::shannon::parse_supplier_keys, crate::config::shannon::KEYS_FILE_LIMIT).await;
    match read {
        Read::Unchanged | Read::StillBroken => {}
        Read::Broken(error, bytes) => {
            let keeping = format!("the previous {} suppliers", edge.supplier_addresses().len());
            refuse(app, files, "supplier_keys", trigger, error, bytes, keeping);
        }
        Read::Parsed(keys, bytes) => {
            let before = edge.supplier_addresses();
            let mut after: Vec<String> = keys.iter().map(|k| k.address().to_string()).collect();
            after.sort();
            if before == after {
                accept(files, bytes, format!("unchanged: {} suppliers", after.len()));
                return;
            }
            let added: Vec<&String> = after.iter().filter(|a| !before.contains(a)).collect();
            let removed: Vec<&String> = before.iter().filter(|a| !after.contains(a)).collect();
            let message = format!("{} suppliers; added {added:?}, removed {removed:?}", after.len());
            edge.set_keys(&keys);
            Counters::inc(&app.counters.reloads);
            log::info!("event=supplier_keys_reloaded trigger={trigger} {message}");
            accept(files, bytes, message);
        }
    }
}

/// Count queued relays whose servicer no node owns any more (they wait for it to come back).
async fn log_orphans(app: &App, fleet: &crate::servicer::fleet::Fleet) {
    let store = app.queue.store().clone();
    match smol::unblock(move || store.pending_by_servicer()).await {
        Ok(by_servicer) => {
            let orphans: u64 = by_servicer
                .iter()
                .filter(|(address, _)| {
                    let mut bytes = [0u8; 20];
                    !(hex::decode_to_slice(address, &mut bytes).is_ok() && fleet.owns_address(&bytes))
                })
                .map(|(_, n)| *n)
                .sum();
            if orphans > 0 {
                log::warn!("event=relays_orphaned pending={orphans} (kept in the queue; notified when a node owns their servicer again)");
            }
        }
        Err(e) => log::warn!("event=queue_read_failed error={e:?}"),
    }
}

/// Re-read chains.json (and the name map) and swap in what changed.
pub async fn reload_chains(app: &Rc<App>, trigger: &str) {
    {
        let reloader = &app.reload;
        let _guard = reloader.chains_lock().await;
        let pocket_absent = app.chains().is_empty() && (app.spacemesh.borrow().is_some() || app.shannon.borrow().is_some());
        if pocket_absent && !reloader.chains_path.exists() {
            return reload_names(app).await;
        }
        match read_and_parse(&reloader.chains, &reloader.chains_path, trigger != "interval", chains::parse_chains, crate::config::file::CONFIG_FILE_LIMIT).await
        {
            Read::Unchanged | Read::StillBroken => {}
            Read::Broken(error, bytes) => {
                let keeping = format!("the previous {} chains", app.chains().len());
                refuse(app, &reloader.chains, "chains", trigger, error, bytes, keeping);
            }
            // An empty list would reject every relay: far more likely a truncated file than intent.
            Read::Parsed(list, bytes) if list.is_empty() => {
                let keeping = format!("the previous {} chains", app.chains().len());
                let error = format!("{}: lists no chains; every relay would be rejected", reloader.chains_path.display());
                refuse(app, &reloader.chains, "chains", trigger, error, bytes, keeping);
            }
            Read::Parsed(list, bytes) => {
                let current = app.chains();
                let mut sorted = list.clone();
                sorted.sort_by(|a, b| a.id.cmp(&b.id));
                if sorted == current.sorted() {
                    accept(&reloader.chains, bytes, format!("unchanged: {} chains", current.len()));
                } else {
                    let next = ChainSet::new(list, current.names.clone());
                    let added: Vec<&String> = next.ids.iter().filter(|id| !current.contains(id)).collect();
                    let removed: Vec<&String> = current.ids.iter().filter(|id| !next.contains(id)).collect();
                    let changed: Vec<&String> = next.ids.iter().filter(|id| current.get(id).is_some_and(|c| Some(c) != next.get(id))).collect();
                    let message = format!("{} chains; added {added:?}, removed {removed:?}, changed {changed:?}", next.len());
                    log::info!("event=chains_reloaded trigger={trigger} {message}");
                    Counters::inc(&app.counters.reloads);
                    app.set_chains(Rc::new(next));
                    accept(&reloader.chains, bytes, message);
                }
            }
        }
    }
    reload_names(app).await;
}

/// Reload the chain-name map: the local file, then the remote map over it (remote wins).
/// Errors are only logged; a failed source keeps its last good names.
async fn reload_names(app: &Rc<App>) {
    let reloader = &app.reload;
    if reloader.names_path.is_none() && reloader.remote_names_url.is_empty() {
        return;
    }
    let mut names = BTreeMap::new();
    let mut problems = Vec::new();
    if let Some(path) = reloader.names_path.clone() {
        match smol::unblock(move || chains::load_chain_names(&path)).await {
            Ok(local) => names = local,
            Err(e) => {
                problems.push(e.to_string());
                // Keep the labels in use for the ids the file would have named.
                names = app.chains().names.clone();
            }
        }
    }
    if !reloader.remote_names_url.is_empty() {
        match fetch_names(&app.chain_client, &reloader.remote_names_url).await {
            Ok(remote) => *reloader.remote_names.borrow_mut() = remote,
            Err(e) => problems.push(format!("remote_chains_name_map {}: {e}", app.shown_url(&reloader.remote_names_url))),
        }
        names.extend(reloader.remote_names.borrow().iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for p in &problems {
        log::warn!("event=chain_names_failed error={p:?} (chain names fall back to the last good map or chain ids)");
    }
    let message = if problems.is_empty() { format!("{} names", names.len()) } else { problems.join("; ") };
    *reloader.names.borrow_mut() = Some(Outcome { at: SystemTime::now(), ok: problems.is_empty(), message });
    let _guard = reloader.chains_lock().await;
    let current = app.chains();
    if current.names != names {
        log::info!("event=chain_names_reloaded names={}", names.len());
        app.set_chains(Rc::new(ChainSet::new(current.sorted(), names)));
    }
}

/// GET the remote chain-name map (plain or rich form).
pub async fn fetch_names(client: &crate::http::client::Client, url: &str) -> Result<BTreeMap<String, String>, String> {
    let answer = client.send(crate::http::client::Outgoing::new("GET", url)).await.map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    let text = String::from_utf8(answer.body).map_err(|e| format!("not UTF-8: {e}"))?;
    chains::parse_chain_names(&text, Path::new("remote_chains_name_map")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_name_map_both_forms_and_errors() {
        use crate::sim::http::{HttpServer, Incoming, Reply};
        // Answers the map named by the path: /plain, /rich, /missing (404), /list.
        let server = HttpServer::start(
            "127.0.0.1:0",
            std::sync::Arc::new(|r: Incoming| match r.path.as_str() {
                "/plain" => Reply::text(200, r#"{"0021":"Ethereum"}"#),
                "/rich" => Reply::text(200, r#"{"0021":{"label":"Ethereum","x":1},"0001":"Pocket"}"#),
                "/list" => Reply::text(200, "[1]"),
                _ => Reply::text(404, "nope"),
            }),
        )
        .unwrap();
        let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
        let client = crate::http::client::Client::new(ex, crate::http::client::ClientSettings::new(Duration::from_secs(2)));
        let fetch = |path: &str| smol::block_on(ex.run(fetch_names(&client, &format!("http://{}{path}", server.addr()))));
        let plain = fetch("/plain").unwrap();
        assert_eq!(plain.get("0021").map(String::as_str), Some("Ethereum"));
        let rich = fetch("/rich").unwrap();
        assert_eq!(rich.len(), 2);
        assert!(fetch("/missing").unwrap_err().contains("404"));
        let e = fetch("/list").unwrap_err();
        assert!(e.contains("remote_chains_name_map"), "{e}");
    }

    #[test]
    fn handle_requests_are_taken_once() {
        let h = ReloadHandle::default();
        assert!(!h.take());
        let other = h.clone();
        std::thread::spawn(move || other.request()).join().unwrap();
        assert!(h.take());
        assert!(!h.take());
    }
}
