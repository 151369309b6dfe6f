import Foundation

/// Writes a `MetricsBoard.Snapshot` in the Prometheus text exposition format (version 0.0.4; OpenMetrics parsers
/// read it too). Every family has HELP and TYPE lines, series are sorted, so output is stable, and every
/// configured tunnel and host has its series from the start (zeros), so `rate()` and `absent()` work at once.
enum MetricsText {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static func render(_ s: MetricsBoard.Snapshot) -> String {
        var out = ""
        out.reserveCapacity(256 + s.tunnels.count * 1600)
        let tunnels = s.tunnels.sorted { $0.key < $1.key }
        let hosts = Set(tunnels.map(\.value.host)).filter { !$0.isEmpty }.sorted()
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func line(_ name: String, _ labels: [(String, String)], _ value: String) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " \(value)\n"
        }
        func histogram(_ name: String, _ labels: [(String, String)], _ tally: Tally?, _ bounds: [Double]) {
            let t = tally ?? Tally()
            var cumulative = 0
            for (i, bound) in bounds.enumerated() {
                cumulative += i < t.buckets.count ? t.buckets[i] : 0
                line(name + "_bucket", labels + [("le", number(bound))], String(cumulative))
            }
            line(name + "_bucket", labels + [("le", "+Inf")], String(t.count))
            line(name + "_sum", labels, number(t.sum))
            line(name + "_count", labels, String(t.count))
        }

        family("fwd_build_info", "gauge", "The running fwd's version; always 1.")
        line("fwd_build_info", [("version", s.version)], "1")
        family("fwd_start_time_seconds", "gauge", "When the supervisor started, in seconds since 1970.")
        line("fwd_start_time_seconds", [], number(s.startTime.timeIntervalSince1970.rounded(.down)))
        family("fwd_tunnels", "gauge", "Tunnels the supervisor knows, by state.")
        for state in TunnelState.allCases {
            line("fwd_tunnels", [("state", state.rawValue)], String(tunnels.filter { $0.value.state == state }.count))
        }

        family("fwd_tunnel_up", "gauge", "1 when the tunnel is up: every forward passes its end-to-end probe.")
        for (name, t) in tunnels { line("fwd_tunnel_up", [("tunnel", name), ("host", t.host)], t.state == .up ? "1" : "0") }
        family("fwd_tunnel_state", "gauge", "1 for the tunnel's current state, 0 for the others.")
        for (name, t) in tunnels {
            for state in TunnelState.allCases {
                line("fwd_tunnel_state", [("tunnel", name), ("host", t.host), ("state", state.rawValue)], t.state == state ? "1" : "0")
            }
        }
        family("fwd_tunnel_restarts_total", "counter", "Times the tunnel was reconnected after its master was lost.")
        for (name, t) in tunnels { line("fwd_tunnel_restarts_total", [("tunnel", name), ("host", t.host)], String(t.restarts)) }
        family("fwd_probe_failures_total", "counter", "Probes of the tunnel's forwards that did not pass.")
        for (name, t) in tunnels {
            line("fwd_probe_failures_total", [("tunnel", name), ("host", t.host)], String(s.tallies[TallyKey(.probeFailures, name)]?.count ?? 0))
        }
        family("fwd_probe_duration_seconds", "histogram", "How long each probe of the tunnel's forwards took.")
        for (name, t) in tunnels {
            histogram("fwd_probe_duration_seconds", [("tunnel", name), ("host", t.host)], s.tallies[TallyKey(.probeSeconds, name)],
                      TallyMetric.probeSeconds.bounds)
        }
        family("fwd_remote_allocated_port", "gauge", "The port the server picked for a -R 0 forward.")
        for (name, t) in tunnels {
            for (spec, port) in t.allocated.sorted(by: { $0.key < $1.key }) {
                line("fwd_remote_allocated_port", [("tunnel", name), ("host", t.host), ("forward", spec)], String(port))
            }
        }

        family("fwd_master_up", "gauge", "1 while the host's ControlMaster answers on its control socket.")
        for host in hosts { line("fwd_master_up", [("host", host)], s.mastersUp.contains(host) ? "1" : "0") }
        family("fwd_master_connect_seconds", "histogram", "From starting the host's master to its control socket answering (a typed login included).")
        for host in hosts {
            histogram("fwd_master_connect_seconds", [("host", host)], s.tallies[TallyKey(.connectSeconds, host)], TallyMetric.connectSeconds.bounds)
        }
        family("fwd_login_needed", "gauge", "1 while logging in to the host again waits for a person (`fwd up NAME` on a terminal).")
        for host in hosts {
            let waiting = tunnels.contains { $0.value.host == host && $0.value.state == .needsAuth }
            line("fwd_login_needed", [("host", host)], waiting ? "1" : "0")
        }
        return out
    }

    /// Label values escape backslash, double quote and newline, as the format requires.
    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction; others as Swift prints a Double, which Prometheus parses.
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
