#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a public forward (`public = true`, a bind address beyond loopback) promises, and where its probe checks
/// that promise (docs/usage.md, "Sharing a tunnel"). A -R listener is the server's: sshd binds it where its
/// `GatewayPorts` allows, whatever the client asked, and says nothing when it falls back to loopback. So the
/// probe opens a channel to the address a client elsewhere would use as well as to loopback. A -L or -D
/// listener is ssh's on this machine, bound as written; its probe connects to the addresses it is shared on.
package enum Sharing {
    /// A public listener answers on loopback but not where it is shared.
    package enum Gap: Sendable, Equatable {
        /// The server's loopback answers on `port`, its own address does not: sshd's `GatewayPorts no`.
        case serverLoopbackOnly(port: Int)
        /// This machine's `address` does not accept on `port` although loopback does.
        case localAddressRefused(address: String, port: Int)
    }

    /// Bind addresses that mean every address of their family (ssh sends an empty one as "*").
    static func isWildcard(_ bind: String) -> Bool {
        ["", "*", "0.0.0.0", "::"].contains(bind)
    }

    /// Whether the forward is shared beyond loopback: a TCP listener with a bind address that is not loopback.
    static func isShared(_ forward: ForwardSpec, isPublic: Bool) -> Bool {
        isPublic && forward.bindAddress != nil && !forward.isLoopbackOnly
    }

    /// For a public -R forward, the host on the server that its probe reaches the listener at instead of
    /// loopback: a specific bind address itself; for a wildcard, `server`, the server's own address. nil when
    /// there is nothing to check: not shared, or a wildcard whose server address is unknown, is loopback, or
    /// is of the other family than a `0.0.0.0` or `::` bind.
    static func remoteCheckHost(_ forward: ForwardSpec, isPublic: Bool, server: String?) -> String? {
        guard forward.kind == .remote, isShared(forward, isPublic: isPublic), let bind = forward.bindAddress else { return nil }
        guard isWildcard(bind) else { return bind }
        guard let server, !server.isEmpty, !ForwardSpec.isLoopbackAddress(server) else { return nil }
        if bind == "0.0.0.0" && server.contains(":") { return nil }
        if bind == "::" && isIPv4(server) { return nil }
        return server
    }

    /// The server's own address, as a client beyond it reaches the server: behind ProxyJump or ProxyCommand the
    /// last hop's target (`hostname` as `ssh -G` prints it), else the address the master's TCP connection
    /// goes to (`path`), else `hostname`.
    static func serverAddress(resolved: ResolvedHost?, path: MasterPath?) -> String? {
        let proxied = [resolved?.value("proxyjump"), resolved?.value("proxycommand")].contains { $0 != nil && $0 != "none" }
        if !proxied, let path { return path.remoteAddress }
        return resolved?.value("hostname")
    }

    /// For a public -L or -D forward, the addresses of this machine its listener serves beyond loopback: the
    /// bind address itself, or for a wildcard every address of `interfaces` in the bind's family (both for an
    /// empty one or "*", which ssh binds on both).
    static func localAddresses(_ forward: ForwardSpec, isPublic: Bool, interfaces: [String]) -> [String] {
        guard forward.kind != .remote, isShared(forward, isPublic: isPublic), let bind = forward.bindAddress else { return [] }
        guard isWildcard(bind) else { return [bind] }
        let others = interfaces.filter { !ForwardSpec.isLoopbackAddress($0) }
        switch bind {
        case "0.0.0.0": return others.filter(isIPv4)
        case "::": return others.filter { !isIPv4($0) }
        default: return others
        }
    }

    /// This machine's interface addresses (getifaddrs), without IPv6 link-local ones (a client needs their
    /// scope), in the order the kernel lists them, each once.
    static func interfaceAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(first) }
        var result: [String] = []
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let current = entry {
            entry = current.pointee.ifa_next
            guard let sa = current.pointee.ifa_addr, let address = MasterPath.numericHost(sa),
                  !address.lowercased().hasPrefix("fe80:"), !result.contains(address) else { continue }
            result.append(address)
        }
        return result
    }

    /// `host:port`, with an IPv6 address in brackets.
    static func place(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func isIPv4(_ address: String) -> Bool {
        var v4 = in_addr()
        return inet_pton(AF_INET, address, &v4) == 1
    }
}
