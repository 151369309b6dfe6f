import Foundation

/// A change of the machine's network as the kernel (Linux rtnetlink) or the system (macOS path monitor) reports it.
package enum NetworkChange: Sendable, Equatable, CustomStringConvertible {
    case addressAdded(address: String, interface: String)
    case addressRemoved(address: String, interface: String)
    case linkChanged(interface: String, up: Bool)
    /// A route was added or removed; `destination` is `prefix/len` ("default" for 0/0).
    case routeChanged(destination: String, removed: Bool, interface: String?)
    /// The system says something changed without saying what (macOS path updates, a lost netlink message).
    case unspecified(String)

    package var description: String {
        switch self {
        case .addressAdded(let a, let i): "\(a) added to \(i)"
        case .addressRemoved(let a, let i): "\(a) removed from \(i)"
        case .linkChanged(let i, let up): "\(i) went \(up ? "up" : "down")"
        case .routeChanged(let d, let removed, let i): "route to \(d)\(i.map { " via \($0)" } ?? "") \(removed ? "removed" : "added")"
        case .unspecified(let why): why
        }
    }

    /// Whether the change can make a path usable that was not (a host waiting to reconnect should try now).
    var mayRestorePath: Bool {
        switch self {
        case .addressAdded, .unspecified: true
        case .linkChanged(_, let up): up
        case .routeChanged(_, let removed, _): !removed
        case .addressRemoved: false
        }
    }
}

/// Reports network changes as they happen, one stream per monitor. Linux: `NetlinkMonitor`; macOS: `PathMonitor`.
package protocol NetworkMonitor: Sendable {
    /// Changes from now on. The stream ends when the monitor stops.
    func changes() -> AsyncStream<NetworkChange>
    func stop()
}

/// Why a host's masters should be looked at now.
package enum PathTrigger: Sendable, Equatable, CustomStringConvertible {
    case network(NetworkChange)
    /// The machine slept (seconds asleep).
    case resumed(asleep: Double)
    /// `fwd reconnect`.
    case requested

    package var description: String {
        switch self {
        case .network(let change): "network change: \(change)"
        case .resumed(let seconds): "resumed after \(Self.duration(seconds)) asleep"
        case .requested: "`fwd reconnect` asked"
        }
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 90 { return "\(Int(seconds.rounded())) s" }
        if seconds < 90 * 60 { return "\(Int((seconds / 60).rounded())) min" }
        return String(format: "%.1f h", seconds / 3600)
    }
}

/// What to do with one live master after a trigger.
package enum PathVerdict: Sendable, Equatable {
    case ignore
    /// Ask the server through the master (a transport round trip); restart when nothing comes back.
    case check(String)
    /// The path is certainly gone (its local address vanished): restart without asking.
    case restart(String)
}

/// Where the kernel would send a packet to an address now.
package enum RouteLookup: Sendable, Equatable {
    case source(String)
    case unreachable(String)
}

extension PathTrigger {
    /// Whether this trigger may affect `path` (nil when fwd could not learn it, e.g. a master behind a ProxyCommand
    /// that talks through a pipe). `route` asks the kernel for the current route to an address.
    package func verdict(for path: MasterPath?, route: (String) -> RouteLookup) -> PathVerdict {
        switch self {
        case .resumed, .requested:
            return .check(description)
        case .network(let change):
            guard let path else { return .check(description) }
            // A master on loopback rides no interface that can change.
            if path.isLoopback { return .ignore }
            switch change {
            case .addressRemoved(let address, let interface) where address == path.localAddress:
                return .restart("network change: \(address) removed from \(interface)")
            case .linkChanged(let interface, up: false) where interface == path.interface:
                return .check(description)
            default:
                switch route(path.remoteAddress) {
                case .unreachable(let why):
                    return .check("\(description); no route to \(path.remoteAddress) (\(why))")
                case .source(let source) where source != path.localAddress:
                    return .check("\(description); \(path.remoteAddress) is now reached from \(source), not \(path.localAddress)")
                case .source:
                    return .ignore
                }
            }
        }
    }
}
