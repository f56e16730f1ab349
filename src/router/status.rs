//! The status page: the pool as this VM sees it, as one JSON document — configuration
//! generation, algorithm, panic state, and per backend its weights (configured and after slow
//! start), health, ejection, last state change, in-flight requests, latency estimate and
//! sticky sessions issued; and what the filter holds in shared data (keys and bytes, as found
//! there). Counters and gauges are the proxy-wide metrics.

use std::fmt::Write;

use super::Router;
use crate::metrics::{BackendCounter, BackendGauge};
use crate::state::keys;
use crate::state::registry::footprint;

use crate::MS;

/// `s` as a JSON string.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number, or `null` when unknown.
fn push_opt(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// A finite number as JSON (`null` otherwise).
fn push_num(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str("null");
    }
}

impl Router {
    /// The status document at `now_ns` (Unix epoch nanoseconds).
    pub fn status_json(&self, now_ns: u64) -> String {
        let mono_ns = self.clock.at(now_ns);
        let c = &self.config;
        let table = self.prober.as_ref().and_then(|p| p.table());
        let availability = self.availability.as_ref();
        let mut out = String::with_capacity(320 + 320 * c.pool.len());
        out.push_str("{\"cluster\":");
        push_str(&mut out, &c.cluster);
        let _ = write!(
            out,
            ",\"algorithm\":\"{}\",\"mode\":\"{}\",\"generation\":{},\"config_digest\":\"{:016x}\",\
             \"health_checks\":{},\"outlier_detection\":{},\"slow_start_ms\":{},\"panic\":{},\
             \"using_backups\":{},\"now_ms\":{},\"shared_data\":",
            c.algorithm.name(),
            c.target.mode.name(),
            self.generation,
            c.digest,
            c.health_check.is_some(),
            c.outlier_detection.is_some(),
            c.slow_start_ms,
            availability.is_some_and(|a| a.panic),
            availability.is_some_and(|a| a.using_backups),
            now_ns / MS,
        );
        match footprint(&self.store) {
            Some(f) => {
                let _ = write!(out, "{{\"keys\":{},\"bytes\":{}}}", f.keys, f.bytes);
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"discovery\":");
        self.push_discovery(&mut out, now_ns);
        out.push_str(",\"backends\":[");
        for (i, b) in c.pool.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let slot = availability.and_then(|a| a.slots.get(i));
            // The published entry, if the table is this configuration's.
            let entry = table.and_then(|t| t.get(i)).filter(|e| e.key == keys::backend(b));
            let percent = slot.map_or(100, |s| u64::from(s.weight_percent));
            let hundredths = u64::from(b.weight) * percent;
            out.push_str("{\"id\":");
            push_str(&mut out, &b.id);
            out.push_str(if b.address.is_some() { ",\"address\":" } else { ",\"cluster\":" });
            push_str(&mut out, &b.host);
            let _ = write!(
                out,
                ",\"weight\":{},\"effective_weight\":{}.{:02},\"backup\":{},\"drain\":{},\
                 \"healthy\":{},\"available\":{},\"accepted\":{},\"ejected_until_ms\":",
                b.weight,
                hundredths / 100,
                hundredths % 100,
                b.backup,
                b.drain,
                entry.is_none_or(|e| e.healthy),
                slot.is_none_or(|s| s.available),
                slot.is_none_or(|s| s.accepted),
            );
            // Told in wall time, as `now_ms`.
            let until = entry.map(|e| e.ejected_until_ns).filter(|&t| t > mono_ns);
            push_opt(
                &mut out,
                until.map(|t| t.saturating_sub(mono_ns).saturating_add(now_ns) / MS),
            );
            out.push_str(",\"ejections\":");
            push_opt(&mut out, entry.map(|e| u64::from(e.ejections)));
            out.push_str(",\"last_change\":");
            match entry.and_then(|e| e.last) {
                Some(change) => push_str(&mut out, &change.to_string()),
                None => out.push_str("null"),
            }
            out.push_str(",\"in_flight\":");
            push_opt(&mut out, self.metrics.gauge(i, BackendGauge::InFlight));
            out.push_str(",\"ewma_us\":");
            let ewma = self.balancer.latency_ns(i, mono_ns);
            push_opt(&mut out, ewma.map(|ns| (ns / 1_000.0) as u64));
            out.push_str(",\"requests\":");
            push_opt(&mut out, self.metrics.counted(i, BackendCounter::Requests));
            out.push_str(",\"sticky_sessions_issued\":");
            push_opt(&mut out, self.metrics.counted(i, BackendCounter::StickyIssued));
            self.push_load_report(&mut out, i, mono_ns);
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// With an algorithm that reads load reports: `,"load_weight":w` (the weight in use, for
    /// client_side_weighted_round_robin) and `,"load_report":` `null` or the last report seen
    /// (its age, rate, utilization, errors, and least_load's metric with its age).
    fn push_load_report(&self, out: &mut String, i: usize, mono_ns: u64) {
        let Some(r) = self.reports.as_ref() else { return };
        if let Some(w) = self.balancer.weight(i) {
            let _ = write!(out, ",\"load_weight\":{w}");
        }
        out.push_str(",\"load_report\":");
        let Some(e) = r.table.get(i).filter(|e| e.at > 0) else {
            out.push_str("null");
            return;
        };
        let _ = write!(out, "{{\"age_ms\":{}", mono_ns.saturating_sub(e.at) / MS);
        for (name, v) in [("rps", e.rps), ("utilization", e.utilization), ("eps", e.eps)] {
            let _ = write!(out, ",\"{name}\":");
            push_num(out, v);
        }
        if r.rules.metric.is_some() {
            out.push_str(",\"metric\":");
            if e.metric_at > 0 {
                push_num(out, e.metric);
                let _ =
                    write!(out, ",\"metric_age_ms\":{}", mono_ns.saturating_sub(e.metric_at) / MS);
            } else {
                out.push_str("null");
            }
        }
        out.push('}');
    }

    /// `null`, or where the pool comes from: the followed cluster, the source, the generation
    /// this VM's pool was built from, the snapshot's age and the last poll's error.
    fn push_discovery(&self, out: &mut String, now_ns: u64) {
        let (Some(d), Some(f)) = (&self.config.discovery, &self.follower) else {
            out.push_str("null");
            return;
        };
        out.push_str("{\"cluster\":");
        push_str(out, &d.cluster);
        out.push_str(",\"admin_cluster\":");
        push_str(out, &d.admin_cluster);
        let _ = write!(
            out,
            ",\"source\":\"{}\",\"interval_ms\":{},\"generation\":{},\"endpoints\":{},\"poller\":{},\"age_ms\":",
            d.source.name(),
            d.interval_ms,
            f.generation,
            self.config.pool.len(),
            self.holds_discovery_lease(),
        );
        let status = f.status.as_ref();
        let ok = status.map(|s| s.last_ok_ns).filter(|&t| t > 0);
        push_opt(out, ok.map(|t| now_ns.saturating_sub(t) / MS));
        out.push_str(",\"failures\":");
        push_opt(out, status.map(|s| u64::from(s.failures)));
        out.push_str(",\"last_error\":");
        match status.map(|s| s.error.as_str()).filter(|e| !e.is_empty()) {
            Some(e) => push_str(out, e),
            None => out.push_str("null"),
        }
        out.push('}');
    }

    /// Whether this request is for the status page: its path (query included) and the
    /// client's IP (`None` when unknown: never served).
    pub fn is_status_request(&self, path: &str, client: Option<std::net::IpAddr>) -> bool {
        self.config.status.as_ref().is_some_and(|s| s.serves(path, client))
    }

    /// Whether a status page is configured (so the adapter reads the request's path).
    pub fn has_status(&self) -> bool {
        self.config.status.is_some()
    }
}

#[cfg(test)]
mod tests;
