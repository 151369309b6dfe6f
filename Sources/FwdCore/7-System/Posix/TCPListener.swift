#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening TCP socket on a numeric address (or "localhost"), with SO_REUSEADDR so a port freed a moment
/// ago binds again. The lab's servers and the tests' listeners use it.
package enum TCPListener {
    /// Frozen, as `DescriptorPair` is, so an owner in another module can take the socket out.
    @frozen package struct Listening: ~Copyable {
        package var socket: Descriptor
        package var port: Int
    }

    /// Listens on `host`:`port` (0: the kernel picks); returns the socket and the bound port.
    package static func listen(host: String, port: Int, backlog: Int32 = 128, nonBlocking: Bool = false) throws(PosixError) -> Listening {
        let addresses: [SocketAddress]
        do {
            addresses = try Resolver.resolve(host: host, port: port, names: .numeric(localhost: true), passive: true)
        } catch {
            throw PosixError("getaddrinfo(\(host))", EINVAL)
        }
        guard let address = addresses.first else { throw PosixError("getaddrinfo(\(host))", EINVAL) }
        let socket = try Posix.streamSocket(family: address.family, nonBlocking: nonBlocking)
        var one: Int32 = 1
        setsockopt(socket.raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockaddr({ bind(socket.raw, $0, $1) }) == 0 else { throw PosixError("bind(\(host):\(port))", errno) }
        guard Posix.listenRaw(socket.raw, backlog) == 0 else { throw PosixError("listen(\(host):\(port))", errno) }
        let bound = boundPort(socket.raw)
        return Listening(socket: socket, port: bound)
    }

    /// The local port a TCP socket is bound to.
    package static func boundPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
        }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { ptr -> Int in
            if family == AF_INET6 {
                return ptr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return ptr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }
}
