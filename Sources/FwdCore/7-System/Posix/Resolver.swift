#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket address as getaddrinfo gives it: the family and the raw sockaddr bytes.
package struct SocketAddress: Sendable, Equatable {
    package var family: Int32
    package var bytes: [UInt8]

    package init(family: Int32, bytes: [UInt8]) {
        self.family = family
        self.bytes = bytes
    }

    /// The numeric host (no port), as getnameinfo prints it; nil for a UNIX address.
    package var numericHost: String? {
        guard family == AF_INET || family == AF_INET6 else { return nil }
        var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = bytes.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: sockaddr.self) {
                getnameinfo($0.baseAddress, socklen_t(raw.count), &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST)
            }
        }
        guard rc == 0 else { return nil }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    package func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        bytes.withUnsafeBytes { raw in raw.withMemoryRebound(to: sockaddr.self) { body($0.baseAddress!, socklen_t(raw.count)) } }
    }
}

/// The one getaddrinfo wrapper. Literal addresses resolve at once; a name may block on DNS, so callers on the
/// cooperative pool use `resolveOffPool`.
package enum Resolver {
    package struct Failure: Error, Equatable, CustomStringConvertible {
        package var host: String
        package var reason: String
        package var description: String { "cannot resolve \(host): \(reason)" }
    }

    package enum Names: Sendable {
        /// Numeric addresses only; "localhost" too when `localhost` is set. Never asks DNS.
        case numeric(localhost: Bool)
        /// Any name, as the system resolves it (DNS, /etc/hosts).
        case any
    }

    package static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The stream-socket addresses of `host`:`port` (port nil: 0), in getaddrinfo's order. `passive` with a
    /// nil host gives the wildcard addresses, for a listener.
    package static func resolve(host: String?, port: Int?, names: Names = .any, passive: Bool = false) throws(Failure) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Posix.stream
        var flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        if case .numeric(let localhost) = names, !(localhost && host == "localhost") { flags |= AI_NUMERICHOST }
        hints.ai_flags = flags
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port ?? 0), &hints, &list)
        guard rc == 0, let first = list else {
            throw Failure(host: host ?? "*", reason: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let addr = current.pointee.ai_addr {
                let bytes = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(addr), count: Int(current.pointee.ai_addrlen)))
                let address = SocketAddress(family: current.pointee.ai_family, bytes: bytes)
                if !result.contains(address) { result.append(address) }
            }
            entry = current.pointee.ai_next
        }
        return result
    }

    /// The same on a thread of its own when `host` is a name (it may wait on DNS); a literal resolves inline.
    package static func resolveOffPool(host: String, port: Int?) async throws(Failure) -> [SocketAddress] {
        if isNumeric(host) { return try resolve(host: host, port: port) }
        let result = await offPool { Result { () throws(Failure) in try resolve(host: host, port: port) } }
        return try result.get()
    }

    /// Every address `host` resolves to, as numeric strings in getaddrinfo's order; empty when it does not.
    package static func numericHosts(_ host: String) async -> [String] {
        var seen: [String] = []
        for address in (try? await resolveOffPool(host: host, port: nil)) ?? [] {
            if let text = address.numericHost, !seen.contains(text) { seen.append(text) }
        }
        return seen
    }
}
