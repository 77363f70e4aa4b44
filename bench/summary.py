#!/usr/bin/env python3
"""One line per recorded benchmark result: `python3 bench/summary.py [results.jsonl]`."""

import json
import os
import sys


def kb(v):
    return f"{v / 1024:.1f} MiB" if isinstance(v, (int, float)) else "-"


def line(e):
    r, s = e["result"], e["scenario"]
    if s == "startup":
        return f"ready {r['port_accepting_ms_median']} ms (restarts {r['port_accepting_ms_median_restarts']} ms) with {r['keys']} keys; binary {r['binary_bytes']}"
    if s == "crypto":
        return f"floor {r['floor_relays_per_s_median']:.0f} relays/s (with sort {r['floor_with_sort_median']:.0f}); verify {r['steps_us']['aat_verify_us']:.1f} us, sign {r['steps_us']['sign_us']:.1f} us"
    if s == "latency":
        return (f"direct p50 {r['direct']['p50_ms']:.3f} p99 {r['direct']['p99_ms']:.3f} ms; meshd p50 {r['meshd']['p50_ms']:.3f} "
                f"p99 {r['meshd']['p99_ms']:.3f} ms; added p50 {r['added_p50_ms']:.3f} p99 {r['added_p99_ms']:.3f} ms at {r['params']['rate']:.0f}/s")
    if s == "durability":
        return f"sync {r['sync_ok_per_s_median']:.0f}/s async {r['async_ok_per_s_median']:.0f}/s ratio {r['ratio_sync_over_async']}"
    if s == "maxrate":
        w = r["runs"][0]["window"] or {}
        every = f" (to the every-token floor {r['ratio_to_every_token_floor']})" if "ratio_to_every_token_floor" in r else ""
        return (f"meshd {r['meshd_ok_per_s_median']:.0f}/s floor {r['floor_median']:.0f}/s ratio {r['ratio']}{every}; "
                f"cpu/relay {w.get('meshd_cpu_us_per_ok_relay', 0):.0f} us, ctx/relay {w.get('meshd_ctx_switches_per_ok_relay') or 0:.1f}")
    if s == "drain":
        return f"drain {r['drain_per_s_median']}/s (after first accept {r['drain_per_s_after_first_median']}/s), {r['params']['relays']} relays"
    if s == "backlog":
        return (f"{r['served_200']} queued at {r['fill']['ok_per_s']:.0f}/s; RssAnon {kb(r['rss_kb_before']['RssAnon'])} -> "
                f"{kb(r['rss_kb_after_fill']['RssAnon'])} (+{kb(r['rss_anon_growth_kb'])}); RssFile after fill {kb(r['rss_kb_after_fill']['RssFile'])}; "
                f"drain {r['drain_s'] and round(r['drain_s'])} s ({r['drain_per_s']}/s); LMDB {r['queue_file_bytes_after_fill'] / 2**20:.0f} MiB")
    if s == "load500":
        w = r["run"]["window"] or {}
        return (f"{r['run']['ok_per_s']:.0f} ok/s of {r['params']['rate']:.0f}; peak RssAnon {kb(r['peak']['RssAnon'])} RssFile {kb(r['peak']['RssFile'])} "
                f"threads {r['peak']['Threads']}; cpu/relay {w.get('meshd_cpu_us_per_ok_relay', 0):.0f} us; p50 {r['run']['p50_ms']:.1f} p99 {r['run']['p99_ms']:.1f} ms")
    if s == "chainlat":
        m, pr = r["median"], r["params"]
        vol = m.get("voluntary_ctx_switches_per_relay")
        return (f"{pr['delay_ms']} ms chain, {pr['rate']:.0f}/s offered, {pr['conns']} conns, {pr['durability']}: {m['ok_per_s']:.0f} ok/s "
                f"({m['answered_200_share'] * 100:.2f} %), non-200 {r['non_200_total']} total; p50 {m['p50_ms']:.1f} p99 {m['p99_ms']:.1f} ms; "
                f"cpu/relay {m['meshd_cpu_us_per_relay']:.0f} us, ctx/relay {m['ctx_switches_per_relay']:.1f}"
                + (f" (voluntary {vol:.1f})" if vol is not None else "")
                + f"; peak threads {m['peak_threads']} (max {r['max_peak_threads']}), RssAnon {kb(m['peak_rss_anon_kb'])} [median of {pr['runs']}]")
    if s == "slowloris" and "median" in r:
        m = r["median"]
        return (f"{r['params']['conns']} idle: {r['params']['probes']} probes p50 {m['probe_ms_p50']} p99 {m['probe_ms_p99']} ms "
                f"({m['probes_ok']} ok), peak threads {m['peak_threads']} (max {r['max_peak_threads']}), peak RssAnon {kb(m['peak_rss_anon_kb'])}; "
                f"stalled bodies probe p99 {m['body_probe_ms_p99']} ms [median of {r['params']['runs']}]")
    if s == "slowloris":
        h, b = r["headers_idle"], r["body_stall"]
        fmt = lambda ps: ", ".join(f"{p['status']} {p['ms']:.0f} ms" if "status" in p else f"none {p['ms']:.0f} ms" for p in ps)
        return (f"{h['conns_requested']} idle: peak threads {h['peak_threads']}, probes [{fmt(h['probes'])}]; "
                f"{b['conns_requested']} stalled bodies: probes [{fmt(b['probes'])}]")
    if s == "burst":
        return (f"{r['conns']} connections at once, one relay each: {r['unanswered_total']} unanswered within {r['timeout_ms']} ms "
                f"over {len(r['runs'])} runs ({r['runs_with_unanswered']} runs affected)")
    if s == "shstartup":
        return (f"Shannon ready {r['port_accepting_ms_median']} ms (restarts {r['port_accepting_ms_median_restarts']} ms, "
                f"ready line {r['ready_line_seen_ms_median']} ms) with {r['suppliers']} supplier keys")
    if s == "shcrypto":
        st = r["steps_us"]
        return (f"Shannon floor {r['floor_relays_per_s_median']:.0f} relays/s; ring verify {st['ring_verify_us']:.1f} us, "
                f"sign {st['response_build_sign_us']:.1f} us; foreign load on the core {r.get('core_foreign_util')}")
    if s == "shmaxrate":
        w = r["runs"][0]["window"] or {}
        return (f"Shannon meshd {r['meshd_ok_per_s_median']:.0f}/s floor {r['floor_median']:.0f}/s ratio {r['ratio']}; non-200 {r['non_200_total']}; "
                f"cpu/relay {w.get('meshd_cpu_us_per_ok_relay', 0):.0f} us, {r['params']['conns']} conns")
    if s == "shload500":
        m, pr = r["median"], r["params"]
        return (f"Shannon {pr['suppliers']} suppliers, {pr['rate']:.0f}/s offered, {pr['delay_ms']} ms backend: {m['ok_per_s']:.0f} ok/s "
                f"({m['answered_200_share'] * 100:.2f} %), non-200 {r['non_200_total']}; p50 {m['p50_ms']:.1f} p99 {m['p99_ms']:.1f} ms; "
                f"peak RssAnon {kb(m['peak_rss_anon_whole_run_kb'])}, threads max {r['max_peak_threads']}; streams exact {r['streams_exact_all_runs']} "
                f"[median of {pr['runs']}]")
    return json.dumps(r)[:200]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "results.jsonl")
    with open(path) as f:
        for raw in f:
            e = json.loads(raw)
            try:
                text = line(e)
            except (KeyError, TypeError, IndexError) as err:
                text = f"(incomplete: {err!r})"
            build = "override" if e.get("meshd_override") else e["build"]
            tmp = f" [BENCH_TMP={e['tmp']}]" if e.get("tmp") and e["tmp"] != "/tmp" else ""
            print(f"{e['date'][:16]} {e['commit']} {build:7} {e['scenario']:10} {text}{tmp}")
            if e.get("meshd_override"):
                print(f"    (meshd_override: {e['meshd_override']})")


if __name__ == "__main__":
    main()
