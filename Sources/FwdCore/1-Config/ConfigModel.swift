import Foundation

/// How fwd checks that a forward really carries traffic end to end.
package enum ProbeKind: String, Sendable, Hashable, Codable, CaseIterable {
    case tcp, banner, http, socks, remote, none
    /// Application protocols: each makes one round trip its server must answer (ProtocolCheck).
    case postgres, mysql, ssh, tls, smtp, imap, pop3, ftp, rdp, vnc, redis

    /// The probe a forward gets when the tunnel names none, or names one that does not fit its kind.
    package static func defaultProbe(for kind: ForwardKind, isDynamic: Bool) -> ProbeKind {
        if isDynamic { return kind == .remote ? .remote : .socks }
        return kind == .remote ? .remote : .tcp
    }

    /// Whether this probe can test a forward of that kind. Banner, HTTP and protocol probes also run on a
    /// remote forward: through the master, from the server's listener to the local target.
    package func fits(_ forward: ForwardSpec) -> Bool {
        switch self {
        case .none: return true
        case .tcp: return forward.kind == .local
        case .socks: return forward.kind == .dynamic
        case .remote: return forward.kind == .remote
        default: return forward.kind == .local || forward.kind == .remote
        }
    }

    /// One line per probe, for `fwd add --help` and the README.
    package var summary: String {
        switch self {
        case .tcp: "accepts, and the target does not refuse (local default)"
        case .banner: "the server sends any first bytes"
        case .http: "GET / gets an HTTP status line"
        case .socks: "SOCKS5 handshake, master transport; CONNECT probe_target (dynamic default)"
        case .remote: "server listener via the master; local target accepts (remote default)"
        case .none: "no probe: up once the forward is added"
        case .postgres: "SSLRequest gets S or N"
        case .mysql: "the server greeting (protocol 10)"
        case .ssh: "an SSH-2.0 banner"
        case .tls: "ClientHello gets a ServerHello"
        case .smtp: "a 220 greeting"
        case .imap: "an * OK greeting"
        case .pop3: "a +OK greeting"
        case .ftp: "a 220 greeting"
        case .rdp: "X.224 Connection Request gets a Connection Confirm"
        case .vnc: "the RFB version banner"
        case .redis: "PING gets +PONG"
        }
    }
}

/// A `[hosts.NAME]` entry: connection settings fwd renders into its ssh_config fragment.
package struct HostEntry: Sendable, Hashable {
    package var name: String
    package var hostname: String?
    package var user: String?
    package var port: Int?
    package var jump: String?
    package var identity: String?
    package var forwardAgent: Bool = false
    package var forwardX11: Bool = false
    /// How a dead path is noticed: ssh exits between interval×count and interval×(count+1) seconds after
    /// the last data from the server (docs/architecture.md, "Failure detection"), so 1 s × 2 gives 2–3 s.
    package var aliveInterval: Int = HostEntry.defaultAliveInterval
    package var aliveCount: Int = HostEntry.defaultAliveCount
    package var connectTimeout: Int = HostEntry.defaultConnectTimeout
    /// The longest wait between two connection attempts, in seconds (the backoff's ceiling); nil: `Backoff`'s
    /// default (30 s, docs/reliability.md).
    package var retryMaxDelay: Int?
    /// Failed connection attempts in a row after which fwd gives up until the user asks again (autossh's
    /// AUTOSSH_MAXSTART); 0: never gives up.
    package var maxAttempts: Int = 0
    /// Extra ssh_config options in the order written.
    package var options: [(name: String, value: String)] = []

    package static let defaultAliveInterval = 1
    package static let defaultAliveCount = 2
    package static let defaultConnectTimeout = 5

    package init(name: String) { self.name = name }

    package static func == (a: HostEntry, b: HostEntry) -> Bool {
        a.name == b.name && a.hostname == b.hostname && a.user == b.user && a.port == b.port && a.jump == b.jump
            && a.identity == b.identity && a.forwardAgent == b.forwardAgent && a.forwardX11 == b.forwardX11
            && a.aliveInterval == b.aliveInterval && a.aliveCount == b.aliveCount && a.connectTimeout == b.connectTimeout
            && a.retryMaxDelay == b.retryMaxDelay && a.maxAttempts == b.maxAttempts
            && a.options.map { "\($0.name)=\($0.value)" } == b.options.map { "\($0.name)=\($0.value)" }
    }

    package func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

/// A named tunnel: forwards over one SSH host.
package struct Tunnel: Sendable, Hashable {
    package var name: String
    /// A `[hosts]` name, an alias from the user's ssh_config, or `user@host[:port]`.
    package var host: String
    package var forwards: [ForwardSpec]
    /// The probe the user asked for; nil means the default per forward.
    package var probe: ProbeKind?
    /// `probe_target`: for a dynamic forward, what the probe CONNECTs to through the proxy, as the server
    /// sees it. nil: the probe proves the handshake and the master's transport only.
    package var probeTarget: SocksTarget?
    /// Allows bind addresses other than loopback.
    package var isPublic: Bool = false
    package var autostart: Bool = false
    /// The port ranges among the forwards as written; their ports are also in `forwards`, one spec each, so
    /// everything that runs forwards sees single ports only.
    package var ranges: [ForwardRange] = []
    /// Names a PAC script (`fwd pac`) sends through this tunnel's SOCKS port: `wiki.example.com` or `*.corp.lan`.
    package var domains: [String] = []

    package init(name: String, host: String, forwards: [ForwardSpec], probe: ProbeKind? = nil) {
        self.name = name
        self.host = host
        self.forwards = forwards
        self.probe = probe
    }

    /// A tunnel from forwards as written: ranges are expanded into `forwards` and kept in `ranges`.
    package init(name: String, host: String, written: [ForwardRange], probe: ProbeKind? = nil) {
        self.init(name: name, host: host, forwards: written.flatMap(\.specs), probe: probe)
        ranges = written.filter(\.isRange)
    }

    /// The range a forward belongs to, if it was written as part of one.
    package func range(containing forward: ForwardSpec) -> ForwardRange? {
        ranges.first { $0.specs.contains(forward) }
    }

    /// The forwards as the user wrote them: a range once, in the place of its first port.
    package var written: [(kind: ForwardKind, text: String)] {
        forwards.compactMap { f in
            guard let range = range(containing: f) else { return (f.kind, f.text) }
            return range.specs.first == f ? (f.kind, range.text) : nil
        }
    }

    /// The first local SOCKS proxy (-D) of this tunnel: where a PAC script sends its domains.
    package var socksForward: ForwardSpec? {
        forwards.first { $0.kind == .dynamic && $0.listenPort != nil }
    }

    /// The probe run against one of this tunnel's forwards. The ports of a range are not probed: they
    /// usually have nothing behind them until a client asks (an FTP server's passive ports); that ssh
    /// could bind each of them is checked when the forward is added.
    package func probe(for forward: ForwardSpec) -> ProbeKind {
        if range(containing: forward) != nil { return .none }
        if let probe, probe.fits(forward) { return probe }
        if probe == ProbeKind.none { return .none }
        return ProbeKind.defaultProbe(for: forward.kind, isDynamic: forward.isDynamic)
    }
}

/// Where the supervisor serves its metrics (`[metrics] listen`).
package enum MetricsListen: Sendable, Hashable, CustomStringConvertible {
    /// A numeric address (or localhost) and port.
    case tcp(host: String, port: Int)
    /// A UNIX socket path, reachable only by this user.
    case unix(path: String)

    package var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
    }
}

/// How people and programs are told of a tunnel's state changes: `[hooks]`, `notify`, and the per-tunnel
/// `on_change` and `notify` (docs/usage.md, "Monitoring"). Kept apart from `Tunnel`, whose equality decides
/// whether its forwards are redone: a new hook must not reconnect anything.
package struct MonitoringSettings: Sendable, Equatable {
    /// `[metrics] listen`: nothing listens when nil.
    package var metricsListen: MetricsListen?
    /// `[hooks] on_change`: run with /bin/sh -c on every state change of a tunnel without its own.
    package var onChange: String?
    /// `[hooks] timeout`, seconds.
    package var hookTimeout: Double = 10
    /// Top-level `notify`: desktop notifications.
    package var notify = true
    /// Per tunnel: `on_change` and `notify`, where written.
    package var tunnelOnChange: [String: String] = [:]
    package var tunnelNotify: [String: Bool] = [:]

    package init() {}

    package func hook(for tunnel: String) -> String? { tunnelOnChange[tunnel] ?? onChange }
    package func notifies(_ tunnel: String) -> Bool { tunnelNotify[tunnel] ?? notify }
}

/// The whole parsed, validated config.
package struct FwdConfig: Sendable {
    package var path: String
    package var hosts: [String: HostEntry] = [:]
    /// In the order they appear in the file.
    package var tunnels: [Tunnel] = []
    /// Group name to tunnel names, in file order.
    package var groups: [(name: String, members: [String])] = []
    package var monitoring = MonitoringSettings()

    package init(path: String) { self.path = path }

    package func tunnel(named name: String) -> Tunnel? { tunnels.first { $0.name == name } }

    package func group(named name: String) -> [String]? { groups.first { $0.name == name }?.members }

    /// Expands tunnel and group names into tunnels, in the order given, without duplicates.
    package func resolve(_ names: [String]) throws(ConfigError) -> [Tunnel] {
        var result: [Tunnel] = []
        for name in names {
            let members: [String]
            if tunnel(named: name) != nil {
                members = [name]
            } else if let group = group(named: name) {
                members = group
            } else if Self.isGlob(name) {
                // A shell-style pattern (`fwd up 'db-*'`): the tunnels it matches, and the members of the groups it does.
                let matched = tunnels.map(\.name).filter { Self.matches(name, $0) }
                    + groups.filter { Self.matches(name, $0.name) }.flatMap(\.members)
                guard !matched.isEmpty else {
                    throw ConfigError.refused("no tunnel or group matches \"\(Validation.printable(name))\"; `fwd list` shows the configured tunnels and groups")
                }
                members = matched
            } else {
                throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: tunnels.map(\.name) + groups.map(\.name)))
            }
            for member in members where !result.contains(where: { $0.name == member }) {
                if let t = tunnel(named: member) { result.append(t) }
            }
        }
        return result
    }

    /// Whether a name argument is a shell-style pattern: tunnel and group names never hold `*`, `?` or `[`.
    package static func isGlob(_ name: String) -> Bool { name.contains { "*?[".contains($0) } }

    /// fnmatch(3), as the shell matches file names.
    static func matches(_ pattern: String, _ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }

    /// The connection target for a tunnel's host: the fwd host entry when there is one.
    package func hostEntry(for tunnel: Tunnel) -> HostEntry? { hosts[tunnel.host] }
}
