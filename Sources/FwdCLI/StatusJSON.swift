import Foundation
import FwdCore

/// A tunnel's row as `fwd status --json` and `fwd check --json` print it.
struct StatusJSON: Encodable {
    var name: String
    var state: String
    var desired: String
    var host: String
    var forwards: [ForwardJSON]
    @JSONNull var pid: Int?
    var since: String
    var restarts: Int
    @JSONNull var probe_ms: Double?
    @JSONNull var last_error: String?
    /// "same", "changed" (runs with a definition the file no longer has) or "removed" (the file no longer has
    /// the tunnel); null where the file was not read (`fwd check`, or a file that does not parse).
    @JSONNull var config: String?
    // Added by issue 21, after the older keys: scripts that read those see them unchanged.
    /// Failed attempts in a row since the tunnel was last up (0 once it is).
    var attempts: Int
    /// When fwd tries again (ISO 8601); null when no retry is scheduled.
    @JSONNull var next_retry: String?
    /// When a probe result was last recorded (ISO 8601); null before the first.
    @JSONNull var last_probe: String?

    struct ForwardJSON: Encodable {
        var kind: String
        var spec: String
        @JSONNull var allocated_port: Int?
        var probe: String
        @JSONNull var probe_ms: Double?
        @JSONNull var ok: Bool?
        /// The port range this forward belongs to, as written.
        @JSONNull var range: String?
        /// For a -D forward, `socks5h://HOST:PORT`.
        @JSONNull var socks_url: String?
        /// For a public forward, the `HOST:PORT`s where its last probe reached it beyond loopback (on the
        /// server for -R); `[]` when none answered; null when it is not shared or not probed yet.
        @JSONNull var shared: [String]?
    }

    /// Made once: building a formatter per row was a third of `status --json`'s time at 100 tunnels
    /// (scripts/bench measure 7b).
    static let timestamp = Date.ISO8601FormatStyle()

    init(_ r: TunnelStatus, config match: StatusCommand.ConfigMatch? = nil) {
        config = match?.rawValue
        name = r.name
        state = r.state.rawValue
        desired = r.desired.rawValue
        host = r.host
        forwards = r.forwards.map { ForwardJSON(kind: $0.kind.rawValue, spec: $0.spec, allocated_port: $0.allocatedPort, probe: $0.probe.rawValue, probe_ms: $0.probeMs, ok: $0.ok,
                                                 range: $0.range, socks_url: StatusCommand.socksURL($0), shared: $0.shared) }
        pid = r.pid
        since = r.since.formatted(Self.timestamp)
        restarts = r.restarts
        attempts = r.attempts
        next_retry = r.nextRetry?.formatted(Self.timestamp)
        last_probe = r.lastProbe?.formatted(Self.timestamp)
        probe_ms = r.probeMs
        last_error = r.lastError
    }
}
