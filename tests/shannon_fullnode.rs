//! The Shannon supplier edge's full-node side end to end: `supplier::fullnode` and
//! `supplier::sessions` against `sim::fullnode` (reference §2.1, §3.1, §3.4, §4) — failover,
//! one set of queries per session, failure and session expiry, header mismatches, accounts
//! without a public key.

use std::rc::Rc;
use std::time::Duration;

use meshd::http::client::{Client, ClientSettings};
use meshd::shannon::keys::OperatorKey;
use meshd::shannon::proto::SessionHeader;
use meshd::sim::fullnode::{SimApplication, ROUTE_ACCOUNT, ROUTE_APPLICATION, ROUTE_CUPR, ROUTE_DIFFICULTY, ROUTE_PARAMS_AT, ROUTE_SESSION};
use meshd::sim::{start_fullnode, FullNodeSim, FullNodeSimConfig};
use meshd::supplier::fullnode::{FullNodeClient, QueryError};
use meshd::supplier::height::CurrentHeight;
use meshd::supplier::sessions::{start_height_poll, HeaderField, SessionCache, SessionError, PLACEHOLDER_RING_ADDRESS, PLACEHOLDER_RING_PUBKEY};

const SERVICE: &str = "anvil";

fn executor() -> &'static smol::LocalExecutor<'static> {
    Box::leak(Box::new(smol::LocalExecutor::new()))
}

fn run<T>(ex: &'static smol::LocalExecutor<'static>, f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(ex.run(f))
}

fn key(n: u8) -> OperatorKey {
    OperatorKey::from_bytes(&[n; 32]).unwrap()
}

/// A chain with one app (key 1) delegating to one gateway (key 2), one supplier (key 3),
/// height 105, sessions of 10 blocks, grace 10.
fn chain() -> (FullNodeSim, OperatorKey, OperatorKey, OperatorKey) {
    let sim = start_fullnode(FullNodeSimConfig::default()).unwrap();
    let (app, gw, sup) = (key(1), key(2), key(3));
    sim.set_service(SERVICE, [0x7f; 32], 4);
    sim.set_application(SimApplication { address: app.address().into(), delegatee_gateway_addresses: vec![gw.address().into()], ..Default::default() });
    sim.set_account(app.address(), Some(*app.pubkey()));
    sim.set_account(gw.address(), Some(*gw.pubkey()));
    sim.stake_supplier(sup.address(), SERVICE);
    (sim, app, gw, sup)
}

fn client(ex: &'static smol::LocalExecutor<'static>, urls: &[String]) -> FullNodeClient {
    FullNodeClient::new(Client::new(ex, ClientSettings::new(Duration::from_secs(3))), urls).unwrap()
}

/// The header a relay of `app` carries for the session holding `height`, as the chain has it.
fn header(sim: &FullNodeSim, app: &str, height: i64) -> SessionHeader {
    let (session_id, start, end) = sim.session_at(app, SERVICE, height);
    SessionHeader { application_address: app.into(), service_id: SERVICE.into(), session_id, session_start_block_height: start, session_end_block_height: end }
}

fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn failover_from_a_dead_url_and_back_to_the_one_that_answered() {
    let (sim, app, _, _) = chain();
    let ex = executor();
    let dead = dead_url();
    let c = client(ex, &[dead.clone(), sim.url()]);
    assert_eq!(run(ex, c.latest_height()), Ok(105));
    assert_eq!(c.attempts(), 2, "the dead URL, then the live one within the same call");
    assert_eq!(c.preferred_url(), sim.url());
    assert_eq!(run(ex, c.latest_height()), Ok(105));
    assert_eq!(c.attempts(), 3, "the URL that answered is asked first");
    // A 5xx fails over too, and when every URL fails the error names the last URL and query.
    sim.fail_with(Some(503));
    let err = run(ex, c.account_pubkey(app.address())).unwrap_err();
    match &err {
        QueryError::Transport { url, query, .. } | QueryError::Status { url, query, .. } => {
            assert!(query.contains(app.address()), "{err}");
            assert!(url == &dead || url == &sim.url(), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
    sim.fail_with(None);
    // A definite answer (404) is not failed over.
    let before = c.attempts();
    let err = run(ex, c.application("pokt1nobody")).unwrap_err();
    assert!(matches!(&err, QueryError::NotFound { query, .. } if query.ends_with("/pokt1nobody")), "{err:?}");
    assert_eq!(c.attempts(), before + 1);
    // All URLs dead: a transport error naming the URL.
    let c = client(ex, std::slice::from_ref(&dead));
    let err = run(ex, c.latest_height()).unwrap_err();
    assert!(matches!(&err, QueryError::Transport { url, .. } if url == &dead), "{err:?}");
    assert!(FullNodeClient::new(Client::new(ex, ClientSettings::new(Duration::from_secs(1))), &[]).is_err());
}

#[test]
fn ten_concurrent_relays_of_one_session_make_one_set_of_queries() {
    let (sim, app, gw, sup) = chain();
    sim.set_delay(Duration::from_millis(50));
    let ex = executor();
    let cache = SessionCache::new(client(ex, &[sim.url()]), CurrentHeight::new(), Duration::from_secs(2));
    let h = header(&sim, app.address(), 105);
    let infos = run(ex, async {
        let lookups: Vec<_> = (0..10)
            .map(|_| {
                let (cache, h) = (cache.clone(), h.clone());
                ex.spawn(async move { cache.session(&h).await })
            })
            .collect();
        let mut out = Vec::new();
        for l in lookups {
            out.push(l.await.unwrap());
        }
        out
    });
    assert!(infos.iter().all(|i| Rc::ptr_eq(i, &infos[0])));
    let s = sim.stats();
    assert_eq!(
        (s.route(ROUTE_SESSION), s.route(ROUTE_APPLICATION), s.route(ROUTE_PARAMS_AT), s.route(ROUTE_DIFFICULTY), s.route(ROUTE_CUPR), s.route(ROUTE_ACCOUNT)),
        (1, 1, 1, 1, 1, 2),
        "{s:?}"
    );
    let info = &infos[0];
    assert_eq!(info.header, h);
    assert_eq!((info.difficulty_target, info.compute_units_per_relay), ([0x7f; 32], 4));
    assert_eq!(info.params.grace_period_end_offset_blocks, 10);
    let mut expected = [(app.address().to_string(), *app.pubkey()), (gw.address().to_string(), *gw.pubkey())];
    expected.sort();
    assert_eq!(info.ring_addresses, expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>());
    assert_eq!(info.ring, expected.iter().map(|e| e.1).collect::<Vec<_>>());
    assert_eq!(info.check_supplier(sup.address()), Ok(()));
    assert!(matches!(info.check_supplier(gw.address()), Err(SessionError::SupplierNotInSession { .. })));

    // The next session of the same app: a new set of queries, but the account keys are cached.
    sim.set_delay(Duration::ZERO);
    sim.set_height(115);
    run(ex, cache.session(&header(&sim, app.address(), 115))).unwrap();
    let s = sim.stats();
    assert_eq!((s.route(ROUTE_SESSION), s.route(ROUTE_ACCOUNT)), (2, 2));
}

#[test]
fn header_mismatches_are_reported_field_by_field() {
    let (sim, app, _, _) = chain();
    let ex = executor();
    let cache = SessionCache::new(client(ex, &[sim.url()]), CurrentHeight::new(), Duration::from_secs(2));
    let good = header(&sim, app.address(), 105);
    let mut forged = good.clone();
    forged.session_end_block_height += 5;
    forged.session_id = "00".repeat(32);
    match run(ex, cache.session(&forged)) {
        Err(SessionError::HeaderMismatch(m)) => {
            assert_eq!(m.iter().map(|x| x.field).collect::<Vec<_>>(), [HeaderField::SessionId, HeaderField::SessionEndBlockHeight]);
            assert_eq!(m[1].chain, good.session_end_block_height.to_string());
        }
        other => panic!("{other:?}"),
    }
    // The forged relay did not poison the session: the honest one passes on the cached answer.
    assert_eq!(run(ex, cache.session(&good)).unwrap().header, good);
    assert_eq!(sim.stats().route(ROUTE_SESSION), 1);
    // A start height off the grid is the chain's session too, but its start differs.
    let mut off_grid = good.clone();
    off_grid.session_start_block_height = 103;
    match run(ex, cache.session(&off_grid)) {
        Err(SessionError::HeaderMismatch(m)) => assert_eq!(m[0].field, HeaderField::SessionStartBlockHeight),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_account_without_pubkey_is_a_typed_error_and_failures_expire() {
    let (sim, app, gw, _) = chain();
    sim.set_account(gw.address(), None);
    let ex = executor();
    let fail_ttl = Duration::from_millis(300);
    let cache = SessionCache::new(client(ex, &[sim.url()]), CurrentHeight::new(), fail_ttl);
    let err = run(ex, cache.client().account_pubkey(gw.address())).unwrap_err();
    assert!(matches!(&err, QueryError::NoPubKey { address, .. } if address == gw.address()), "{err:?}");
    assert!(!err.is_transient());
    let h = header(&sim, app.address(), 105);
    match run(ex, cache.session(&h)) {
        Err(SessionError::Query(QueryError::NoPubKey { address, .. })) => assert_eq!(address, gw.address()),
        other => panic!("{other:?}"),
    }
    // The gateway signs its first transaction: within the failure TTL the error is still
    // answered from the cache, after it the session is fetched again and succeeds.
    sim.set_account(gw.address(), Some(*gw.pubkey()));
    assert!(run(ex, cache.session(&h)).is_err());
    assert_eq!(sim.stats().route(ROUTE_SESSION), 1);
    std::thread::sleep(fail_ttl + Duration::from_millis(50));
    let info = run(ex, cache.session(&h)).unwrap();
    assert!(info.ring.contains(gw.pubkey()));
    assert_eq!(sim.stats().route(ROUTE_SESSION), 2);

    // A transient outage is not cached for long either.
    let other = key(9);
    sim.set_application(SimApplication { address: other.address().into(), ..Default::default() });
    sim.set_account(other.address(), Some(*other.pubkey()));
    sim.fail_with(Some(502));
    let h2 = header(&sim, other.address(), 105);
    assert!(matches!(run(ex, cache.session(&h2)), Err(SessionError::Query(e)) if e.is_transient()));
    sim.fail_with(None);
    std::thread::sleep(fail_ttl + Duration::from_millis(50));
    let info = run(ex, cache.session(&h2)).unwrap();
    // No gateways: the app and the placeholder (§2.1).
    assert!(info.ring_addresses.contains(&PLACEHOLDER_RING_ADDRESS.to_string()));
    assert!(info.ring.contains(&PLACEHOLDER_RING_PUBKEY));
    assert_eq!(info.ring.len(), 2);
}

#[test]
fn sessions_expire_after_their_grace_window() {
    let (sim, app, _, _) = chain();
    let ex = executor();
    let cache = SessionCache::new(client(ex, &[sim.url()]), CurrentHeight::new(), Duration::from_secs(2));
    let poll = start_height_poll(&cache, ex, Duration::from_millis(20));
    let h = header(&sim, app.address(), 105);
    run(ex, async {
        while cache.height().get().is_none() {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.height().get(), Some(105));
        cache.session(&h).await.unwrap();
        assert_eq!(cache.len(), 1);
        // Session 101..=110, grace 10: still servable at 120, evicted and refused at 121.
        sim.set_height(120);
        while cache.height().get() != Some(120) {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.session(&h).await.is_ok());
        sim.set_height(121);
        while cache.height().get() != Some(121) {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.len(), 0, "evicted by the height poll");
        match cache.session(&h).await {
            Err(SessionError::GraceElapsed { session_end: 110, grace_end: 120, current_height: 121 }) => {}
            other => panic!("{other:?}"),
        }
    });
    drop(poll);
    assert_eq!(sim.stats().route(ROUTE_SESSION), 2, "the late relay fetched the session again");
}

#[test]
fn params_fall_back_to_the_current_route_on_old_nodes() {
    let (sim, _, _, _) = chain();
    sim.set_params_at_height_route(false);
    let ex = executor();
    let c = client(ex, &[sim.url()]);
    let p = run(ex, c.shared_params_at(110)).unwrap();
    assert_eq!(p.num_blocks_per_session, 10);
    assert_eq!((sim.stats().route(ROUTE_PARAMS_AT), sim.stats().route("shared_params")), (1, 1));
}
