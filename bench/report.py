"""The results as a table, each headline figure beside the floor it is bounded by."""

from __future__ import annotations

from typing import Any

LAG_TARGET_RATE = 1000.0

TARGETS = {
    "latency p50 (ms)": 10.0,
    "latency p99 (ms)": 50.0,
    "throughput held (msg/s)": 5000.0,
    "fan-out (deliveries/s)": 25000.0,
    "RSS per idle socket (KiB)": 30.0,
    "projection lag p99 at 1,000 msg/s (ms)": 500.0,
    "rebuild (events/s)": 50000.0,
}


def headline(results: dict[str, Any]) -> list[tuple[str, Any, str]]:
    floors = results.get("floors", {})
    kafka = floors.get("kafka_round_trip", {}).get("p50_ms")
    echo = floors.get("websocket_echo", {}).get("p50_ms")
    pg = floors.get("postgres_insert_commit", {}).get("p50_ms")
    latency = results.get("latency", {}).get("send_to_recipient", {})
    held = [t["offered_rate"] for t in results.get("throughput", []) if t.get("held")]
    lag = lag_at(results.get("throughput", []), LAG_TARGET_RATE)
    fanout = results.get("fanout", {})
    connections = results.get("connections", {})
    rebuild_rate = results.get("rebuild", {}).get("events_per_s")
    rows = [
        ("latency p50 (ms)", latency.get("p50_ms"), ratio(latency.get("p50_ms"), kafka, "Kafka round trip")),
        ("latency p99 (ms)", latency.get("p99_ms"), ratio(latency.get("p99_ms"), kafka, "Kafka round trip")),
        (
            "ack p50 (ms)",
            results.get("latency", {}).get("send_to_ack", {}).get("p50_ms"),
            ratio(results.get("latency", {}).get("send_to_ack", {}).get("p50_ms"), echo, "WS echo"),
        ),
        (
            "throughput held (msg/s)",
            max(held) if held else 0,
            rate_ratio(max(held) if held else 0, kafka, "Kafka round trips"),
        ),
        (
            "fan-out (deliveries/s)",
            fanout.get("deliveries_per_s"),
            rate_ratio(fanout.get("deliveries_per_s"), echo, "WS echoes"),
        ),
        (
            "fan-out to last member p99 (ms)",
            fanout.get("latency_to_last_member", {}).get("p99_ms"),
            ratio(fanout.get("latency_to_last_member", {}).get("p99_ms"), kafka, "Kafka round trip"),
        ),
        ("RSS per idle socket (KiB)", connections.get("rss_per_socket_kib"), ""),
        (
            "latency among idle sockets p99 (ms)",
            connections.get("send_to_recipient_among_them", {}).get("p99_ms"),
            ratio(connections.get("send_to_recipient_among_them", {}).get("p99_ms"), kafka, "Kafka round trip"),
        ),
        ("projection lag p99 at 1,000 msg/s (ms)", lag, ratio(lag, pg, "PG insert+commit")),
        ("rebuild (events/s)", rebuild_rate, rate_ratio(rebuild_rate, pg, "PG insert+commits")),
    ]
    return rows


def lag_at(runs: list[dict[str, Any]], rate: float) -> float | None:
    """The projection lag p99 of the throughput run at `rate` (the target names that rate)."""
    return next((t["projection_lag"]["p99_ms"] for t in runs if t["offered_rate"] == rate), None)


def rate_ratio(rate: float | None, floor_ms: float | None, name: str) -> str:
    """A rate beside what one after another of the floor's operations would reach."""
    if not rate or not floor_ms:
        return ""
    floor_rate = 1000 / floor_ms
    return f"{rate / floor_rate:.2f}x sequential {name} ({floor_rate:,.0f}/s)"


def ratio(value: float | None, floor: float | None, name: str) -> str:
    if not value or not floor:
        return ""
    return f"{value / floor:.0f}x {name} ({floor:.2f} ms)"


def render(results: dict[str, Any]) -> str:
    lines = [f"{'figure':38} {'measured':>12} {'target':>10}  vs floor"]
    for name, value, versus in headline(results):
        target = TARGETS.get(name)
        shown = f"{value:.1f}" if isinstance(value, (int, float)) else "n/a"
        lines.append(f"{name:38} {shown:>12} {target if target is not None else '':>10}  {versus}")
    lines.append("")
    for name, floor in results.get("floors", {}).items():
        lines.append(f"floor {name}: p50 {floor['p50_ms']:.3f} ms, p99 {floor['p99_ms']:.3f} ms")
    lines.extend(stage_lines(results))
    lines.extend(scale_out_lines(results.get("scale_out", {})))
    lines.extend(restarted_system_lines(results.get("restarted_system", {})))
    lines.extend(rebuild_lines(results.get("rebuild", {})))
    lines.extend(restart_lines(results.get("restart", {})))
    lines.extend(cpu_lines(results))
    lines.extend(profile_lines(results))
    return "\n".join(lines)


def ms(value: float | None) -> str:
    return f"{value:,.1f} ms" if isinstance(value, (int, float)) else "n/a"


def log_held(stage: dict[str, Any]) -> str:
    """The size of the log a stage ran on (`bench.log_size`)."""
    held = stage.get("log_messages")
    return f"log held {held:,} message events" if isinstance(held, int) else "log size not measured"


def sustained_line(name: str, t: dict[str, Any]) -> str:
    latency = t.get("send_to_recipient", {})
    return (
        f"{name} {t['offered_rate']:.0f}/s for {t['seconds']} s: acked {t['acked']}/{t['messages']}, "
        f"delivered once {t['delivered_once']}, doubled {t['doubled']}, in PostgreSQL {t['in_postgresql']}, "
        f"p50 {ms(latency.get('p50_ms'))}, p99 {ms(latency.get('p99_ms'))}, held={t['held']}; {log_held(t)}"
    )


def stage_lines(results: dict[str, Any]) -> list[str]:
    """One line per stage of the running system, with the log it ran on."""
    lines = []
    latency = results.get("latency")
    if latency:
        to_recipient = latency["send_to_recipient"]
        lines.append(
            f"latency {latency['offered_rate']:.0f}/s, {latency['messages']} messages: "
            f"p50 {ms(to_recipient['p50_ms'])}, p99 {ms(to_recipient['p99_ms'])}; {log_held(latency)}"
        )
    lines.extend(sustained_line("throughput", t) for t in results.get("throughput", []))
    fanout = results.get("fanout")
    if fanout:
        lines.append(
            f"fan-out {fanout['members']} members: {fanout['deliveries']}/{fanout['expected_deliveries']} "
            f"deliveries, {fanout['deliveries_per_s']}/s; {log_held(fanout)}"
        )
    connections = results.get("connections")
    if connections:
        lines.append(
            f"connections: {connections['sockets']} sockets, {connections['rss_per_socket_kib']} KiB each; "
            f"{log_held(connections)}"
        )
    return lines


def scale_out_lines(scale: dict[str, Any]) -> list[str]:
    """Both runs of the scale-out stage and their messages per CPU second."""
    if "single" not in scale:
        return []
    lines = []
    for key, label in (("single", "1 streams worker + 1 gateway"), ("double", "2 streams workers + 2 gateways")):
        run = scale[key]
        lines.append(sustained_line(f"scale-out, {label}:", run))
        lines.append(
            f"  {run['messages_per_cpu_s']:,} messages per CPU second ({run['cpu_seconds']} CPU s over all processes)"
        )
    double = scale["double"]
    lines.append(
        f"  settled before the second run: streams group {double['streams_rebalance_s']} s, new worker ready "
        f"{double['streams_ready_s']} s, delivery group {double['deliveries_rebalance_s']} s"
    )
    lines.append(
        f"scale-out: messages per CPU second with two of each = {scale['per_cpu_ratio']:.2f}x one of each "
        f"(held within 15 %: {scale['per_cpu_held']})"
    )
    return lines


def restarted_system_lines(restarted: dict[str, Any]) -> list[str]:
    """The restarted system stage: its fill, the restart, the first run after it."""
    if "fill" not in restarted:
        return []
    fill = restarted["fill"]
    filled = (
        f"filled {fill['produced']:,} sends in {fill['seconds']} s ({fill['per_s']:,}/s)"
        if fill["produced"]
        else "no fill needed"
    )
    return [
        f"restarted system: log held {fill['log_before']:,} message events before the fill, {filled}; "
        f"`scripts/system up` to /healthz 200 in {restarted['up_to_healthy_s']} s",
        sustained_line("  then at once", restarted),
    ]


def rebuild_lines(rebuild: dict[str, Any]) -> list[str]:
    """The rebuild stage: its log, the bulk loader alone, the whole command."""
    lines = []
    if "log" in rebuild:
        shape = rebuild["log"]
        lines.append(
            f"rebuild log: {shape['message_events']:,} message events, {shape['users']:,} users, "
            f"{shape['chats']:,} chats, {shape['partitions']} partitions"
        )
    if "bulk" in rebuild:
        bulk = rebuild["bulk"]
        lines.append(
            f"rebuild, bulk loader alone: {bulk['events']:,} events in {bulk['seconds']} s = "
            f"{bulk['events_per_s']:,.0f}/s; then constraints and indexes {bulk['indexes_seconds']} s"
        )
    command = rebuild.get("command", {})
    if "error" in command:
        lines.append(f"rebuild command failed: {command['error']}")
    elif command:
        lines.append(
            f"rebuild, `python -m projections rebuild` (bulk, indexes, catch-up, checksums, swap, start-up): "
            f"{command['events']:,} events in {command['seconds']} s = {command['events_per_s']:,.0f}/s"
        )
    return lines


def restart_lines(restart: dict[str, Any]) -> list[str]:
    """The restart stage: the worker's memory after its log, and its restarts."""
    if "fill" not in restart:
        return []
    fill = restart["fill"]
    lines = [
        f"restart stage ({restart['store']}): {restart['messages']:,} sends over {restart['chats']:,} chats decided "
        f"in {fill['seconds']} s ({fill['decided_per_s']:,}/s); worker RSS {fill['rss_mb']} MB (peak "
        f"{fill['peak_rss_mb']} MB); data dir {restart.get('data_dir_mb', '?')} MB"
    ]
    for key, label in (("restart", "restarted on its data dir"), ("from_nothing", "restarted from nothing")):
        if key in restart:
            r = restart[key]
            lines.append(
                f"  {label}: first decision {r['first_decision_s']} s after the process started, "
                f"{r['changelog_records_read']} changelog records recovered, RSS {r['rss_mb']} MB"
            )
    return lines


def cpu_lines(results: dict[str, Any]) -> list[str]:
    stages = [("latency", results.get("latency"))]
    stages += [(f"throughput {t['offered_rate']:.0f}/s", t) for t in results.get("throughput", [])]
    stages.append(("fan-out", results.get("fanout")))
    scale = results.get("scale_out", {})
    stages += [(f"scale-out {key}", scale.get(key)) for key in ("single", "double")]
    stages.append(("restarted system", results.get("restarted_system")))
    lines = []
    for name, stage in stages:
        if stage and stage.get("cpu_percent"):
            used = ", ".join(f"{group} {percent:.0f}%" for group, percent in stage["cpu_percent"].items())
            lines.append(f"CPU during {name} (% of one core): {used}")
        if stage and stage.get("wakeups_per_s"):
            rates = stage["wakeups_per_s"]
            each = ", ".join(f"{group} {rate:,}" for group, rate in rates.items())
            lines.append(f"wake-ups during {name} (a second): {sum(rates.values()):,} in all; {each}")
    return lines


def profile_lines(results: dict[str, Any], top: int = 5) -> list[str]:
    profiles: dict[str, Any] = next((t["profile"] for t in results.get("throughput", []) if t.get("profile")), {})
    lines = []
    for name, summary in profiles.items():
        if "error" in summary:
            lines.append(f"profile {name}: not taken ({summary['error']})")
            continue
        hot = "; ".join(f"{frame} {percent}%" for frame, percent in summary["self"][:top])
        lines.append(f"profile {name} ({summary['samples']} samples), top self: {hot}")
    return lines
