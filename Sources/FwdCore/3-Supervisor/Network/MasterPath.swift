import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The network path of one master: its TCP connection to the server (or, behind ProxyJump/ProxyCommand, the
/// connection of the child process that carries it) and the interface that connection leaves by.
package struct MasterPath: Sendable, Equatable, CustomStringConvertible {
    package var localAddress: String
    package var localPort: Int
    package var remoteAddress: String
    package var remotePort: Int
    package var interface: String?

    package init(localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int, interface: String? = nil) {
        self.localAddress = localAddress
        self.localPort = localPort
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.interface = interface
    }

    package var description: String {
        "\(localAddress):\(localPort)\(interface.map { " on \($0)" } ?? "") → \(remoteAddress):\(remotePort)"
    }

    var isLoopback: Bool { remoteAddress.hasPrefix("127.") || remoteAddress == "::1" }

    /// The path of the ssh process `pid`: the established TCP socket with the lowest descriptor (its connection
    /// to the server is opened before any forwarded connection), in ssh itself and else in its descendants (a
    /// ProxyJump `ssh -W` or a ProxyCommand's `nc`). nil where /proc does not tell (macOS, or no TCP socket).
    package static func discover(pid: Int32) -> MasterPath? {
        #if os(Linux)
        var connections: [String: Connection] = [:]
        var listening: Set<Int> = []
        for file in ["tcp", "tcp6"] {
            guard let text = ProcessTable.readAll("/proc/\(pid)/net/\(file)") else { continue }
            connections.merge(parseEstablished(text)) { a, _ in a }
            listening.formUnion(listeningPorts(text))
        }
        guard !connections.isEmpty else { return nil }
        for process in [pid] + descendants(of: pid) {
            for inode in socketInodes(of: process) {
                // A connection accepted on one of the master's own listeners (a client of a -L or -D port, a
                // probe) is not the path to the server; behind ProxyJump the master has only those.
                guard let c = connections[inode], !listening.contains(c.local.port) else { continue }
                return MasterPath(localAddress: c.local.address, localPort: c.local.port, remoteAddress: c.remote.address,
                                  remotePort: c.remote.port, interface: interface(holding: c.local.address))
            }
        }
        return nil
        #else
        return nil
        #endif
    }

    struct Endpoint: Equatable {
        var address: String
        var port: Int
    }

    struct Connection: Equatable {
        var local: Endpoint
        var remote: Endpoint
    }

    /// Established connections of a /proc/net/tcp or tcp6 table, by socket inode.
    static func parseEstablished(_ text: String) -> [String: Connection] {
        var result: [String: Connection] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let cols = line.split(separator: " ")
            // sl local_address rem_address st … inode; state 01 is ESTABLISHED.
            guard cols.count > 9, cols[3] == "01", let local = endpoint(cols[1]), let remote = endpoint(cols[2]) else { continue }
            result[String(cols[9])] = Connection(local: local, remote: remote)
        }
        return result
    }

    /// The local ports something listens on (state 0A) in a /proc/net/tcp or tcp6 table.
    static func listeningPorts(_ text: String) -> Set<Int> {
        var result: Set<Int> = []
        for line in text.split(separator: "\n").dropFirst() {
            let cols = line.split(separator: " ")
            guard cols.count > 3, cols[3] == "0A", let local = endpoint(cols[1]) else { continue }
            result.insert(local.port)
        }
        return result
    }

    /// `0101A8C0:0016` → ("192.168.1.1", 22). The kernel prints each 32-bit word of the address in host byte order.
    static func endpoint(_ field: Substring) -> Endpoint? {
        guard let colon = field.lastIndex(of: ":"), let port = Int(field[field.index(after: colon)...], radix: 16) else { return nil }
        let hex = field[..<colon]
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
            withUnsafeBytes(of: word) { bytes += $0 }
            index = next
        }
        // An IPv4 peer on an IPv6 socket shows as ::ffff:a.b.c.d.
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            bytes = Array(bytes[12...])
        }
        return Endpoint(address: numeric(bytes), port: port)
    }

    /// An address's bytes (4 or 16) as inet_ntop prints them.
    static func numeric(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    #if os(Linux)
    /// Socket inodes of a process's descriptors, lowest descriptor first.
    static func socketInodes(of pid: Int32) -> [String] {
        let dir = "/proc/\(pid)/fd"
        let fds = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).compactMap(Int.init).sorted()
        return fds.compactMap { fd in
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\(fd)"),
                  link.hasPrefix("socket:[") else { return nil }
            return String(link.dropFirst(8).dropLast())
        }
    }

    static func descendants(of pid: Int32) -> [Int32] {
        let parents = Dictionary(grouping: ProcessTable.allPids(), by: { ProcessTable.parent(of: $0) ?? 0 })
        var result: [Int32] = []
        var queue = [pid]
        while !queue.isEmpty {
            let children = (parents[queue.removeFirst()] ?? []).sorted()
            result += children
            queue += children
        }
        return result
    }
    #endif

    /// The interface that holds `address`, from getifaddrs.
    static func interface(holding address: String) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(first) }
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let current = entry {
            if let sa = current.pointee.ifa_addr, numericHost(sa) == address { return String(cString: current.pointee.ifa_name) }
            entry = current.pointee.ifa_next
        }
        return nil
    }

    static func numericHost(_ sa: UnsafePointer<sockaddr>) -> String? {
        let family = Int32(sa.pointee.sa_family)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
        var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(sa, length, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        // A link-local IPv6 address prints with its scope ("fe80::1%eth0"); the tables print none.
        return String(decoding: name.prefix { $0 != 0 && $0 != CChar(UInt8(ascii: "%")) }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Where the kernel would send to `address` now: a UDP socket `connect` does the route lookup and picks the
    /// source address, sending nothing.
    package static func route(to address: String) -> RouteLookup {
        var storage = sockaddr_storage()
        let length: socklen_t
        let family: Int32
        if address.contains(":") {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(UInt16(9).bigEndian)
            guard inet_pton(AF_INET6, address, &sin6.sin6_addr) == 1 else { return .unreachable("not an address") }
            withUnsafeBytes(of: sin6) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            (length, family) = (socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
        } else {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(9).bigEndian)
            guard inet_pton(AF_INET, address, &sin.sin_addr) == 1 else { return .unreachable("not an address") }
            withUnsafeBytes(of: sin) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            (length, family) = (socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
        }
        let fd = socket(family, Int32(SOCK_DGRAM_VALUE), 0)
        guard fd >= 0 else { return .unreachable(String(cString: strerror(errno))) }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else { return .unreachable(String(cString: strerror(errno))) }
        var local = sockaddr_storage()
        var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) }
        }
        guard named == 0 else { return .unreachable(String(cString: strerror(errno))) }
        let source = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { numericHost($0) } }
        return source.map { .source(Self.unmapped($0)) } ?? .unreachable("no source address")
    }

    static func unmapped(_ address: String) -> String {
        address.hasPrefix("::ffff:") && address.contains(".") ? String(address.dropFirst(7)) : address
    }
}

#if canImport(Glibc)
let SOCK_DGRAM_VALUE = Int32(SOCK_DGRAM.rawValue)
#else
let SOCK_DGRAM_VALUE = SOCK_DGRAM
#endif
