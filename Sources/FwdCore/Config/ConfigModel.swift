import Foundation

/// How fwd checks that a forward really carries traffic end to end.
public enum ProbeKind: String, Sendable, Hashable, Codable, CaseIterable {
    case tcp, banner, http, socks, remote, none
    /// Application protocols: each makes one round trip its server must answer (ProtocolCheck).
    case postgres, mysql, ssh, tls, smtp, imap, pop3, ftp, rdp, vnc, redis

    /// The probe a forward gets when the tunnel names none, or names one that does not fit its kind.
    public static func defaultProbe(for kind: ForwardKind, isDynamic: Bool) -> ProbeKind {
        if isDynamic { return kind == .remote ? .remote : .socks }
        return kind == .remote ? .remote : .tcp
    }

    /// Whether this probe can test a forward of that kind. Banner, HTTP and protocol probes also run on a
    /// remote forward: through the master, from the server's listener to the local target.
    public func fits(_ forward: ForwardSpec) -> Bool {
        switch self {
        case .none: return true
        case .tcp: return forward.kind == .local
        case .socks: return forward.kind == .dynamic
        case .remote: return forward.kind == .remote
        default: return forward.kind == .local || forward.kind == .remote
        }
    }

    /// One line per probe, for `fwd add --help` and the README.
    public var summary: String {
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
public struct HostEntry: Sendable, Hashable {
    public var name: String
    public var hostname: String?
    public var user: String?
    public var port: Int?
    public var jump: String?
    public var identity: String?
    public var forwardAgent: Bool = false
    public var forwardX11: Bool = false
    /// How a dead path is noticed: ssh exits between interval×count and interval×(count+1) seconds after
    /// the last data from the server (DESIGN.md), so 1 s × 2 gives 2–3 s.
    public var aliveInterval: Int = HostEntry.defaultAliveInterval
    public var aliveCount: Int = HostEntry.defaultAliveCount
    public var connectTimeout: Int = HostEntry.defaultConnectTimeout
    /// Extra ssh_config options in the order written.
    public var options: [(name: String, value: String)] = []

    public static let defaultAliveInterval = 1
    public static let defaultAliveCount = 2
    public static let defaultConnectTimeout = 5

    public init(name: String) { self.name = name }

    public static func == (a: HostEntry, b: HostEntry) -> Bool {
        a.name == b.name && a.hostname == b.hostname && a.user == b.user && a.port == b.port && a.jump == b.jump
            && a.identity == b.identity && a.forwardAgent == b.forwardAgent && a.forwardX11 == b.forwardX11
            && a.aliveInterval == b.aliveInterval && a.aliveCount == b.aliveCount && a.connectTimeout == b.connectTimeout
            && a.options.map { "\($0.name)=\($0.value)" } == b.options.map { "\($0.name)=\($0.value)" }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

/// A named tunnel: forwards over one SSH host.
public struct Tunnel: Sendable, Hashable {
    public var name: String
    /// A `[hosts]` name, an alias from the user's ssh_config, or `user@host[:port]`.
    public var host: String
    public var forwards: [ForwardSpec]
    /// The probe the user asked for; nil means the default per forward.
    public var probe: ProbeKind?
    /// `probe_target`: for a dynamic forward, what the probe CONNECTs to through the proxy, as the server
    /// sees it. nil: the probe proves the handshake and the master's transport only.
    public var probeTarget: SocksTarget?
    /// Allows bind addresses other than loopback.
    public var isPublic: Bool = false
    public var autostart: Bool = false
    /// The port ranges among the forwards as written; their ports are also in `forwards`, one spec each, so
    /// everything that runs forwards sees single ports only.
    public var ranges: [ForwardRange] = []
    /// Names a PAC script (`fwd pac`) sends through this tunnel's SOCKS port: `wiki.example.com` or `*.corp.lan`.
    public var domains: [String] = []

    public init(name: String, host: String, forwards: [ForwardSpec], probe: ProbeKind? = nil) {
        self.name = name
        self.host = host
        self.forwards = forwards
        self.probe = probe
    }

    /// A tunnel from forwards as written: ranges are expanded into `forwards` and kept in `ranges`.
    public init(name: String, host: String, written: [ForwardRange], probe: ProbeKind? = nil) {
        self.init(name: name, host: host, forwards: written.flatMap(\.specs), probe: probe)
        ranges = written.filter(\.isRange)
    }

    /// The range a forward belongs to, if it was written as part of one.
    public func range(containing forward: ForwardSpec) -> ForwardRange? {
        ranges.first { $0.specs.contains(forward) }
    }

    /// The forwards as the user wrote them: a range once, in the place of its first port.
    public var written: [(kind: ForwardKind, text: String)] {
        forwards.compactMap { f in
            guard let range = range(containing: f) else { return (f.kind, f.text) }
            return range.specs.first == f ? (f.kind, range.text) : nil
        }
    }

    /// The first local SOCKS proxy (-D) of this tunnel: where a PAC script sends its domains.
    public var socksForward: ForwardSpec? {
        forwards.first { $0.kind == .dynamic && $0.listenPort != nil }
    }

    /// The probe run against one of this tunnel's forwards. The ports of a range are not probed: they
    /// usually have nothing behind them until a client asks (an FTP server's passive ports); that ssh
    /// could bind each of them is checked when the forward is added.
    public func probe(for forward: ForwardSpec) -> ProbeKind {
        if range(containing: forward) != nil { return .none }
        if let probe, probe.fits(forward) { return probe }
        if probe == ProbeKind.none { return .none }
        return ProbeKind.defaultProbe(for: forward.kind, isDynamic: forward.isDynamic)
    }
}

/// The whole parsed, validated config.
public struct FwdConfig: Sendable {
    public var path: String
    public var hosts: [String: HostEntry] = [:]
    /// In the order they appear in the file.
    public var tunnels: [Tunnel] = []
    /// Group name to tunnel names, in file order.
    public var groups: [(name: String, members: [String])] = []

    public init(path: String) { self.path = path }

    public func tunnel(named name: String) -> Tunnel? { tunnels.first { $0.name == name } }

    public func group(named name: String) -> [String]? { groups.first { $0.name == name }?.members }

    /// Expands tunnel and group names into tunnels, in the order given, without duplicates.
    public func resolve(_ names: [String]) throws(ConfigError) -> [Tunnel] {
        var result: [Tunnel] = []
        for name in names {
            let members: [String]
            if tunnel(named: name) != nil {
                members = [name]
            } else if let group = group(named: name) {
                members = group
            } else {
                throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: tunnels.map(\.name) + groups.map(\.name)))
            }
            for member in members where !result.contains(where: { $0.name == member }) {
                if let t = tunnel(named: member) { result.append(t) }
            }
        }
        return result
    }

    /// The connection target for a tunnel's host: the fwd host entry when there is one.
    public func hostEntry(for tunnel: Tunnel) -> HostEntry? { hosts[tunnel.host] }
}
