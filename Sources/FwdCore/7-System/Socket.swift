#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

package struct SocketError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Small socket helpers for blocking sockets with timeouts: the lab's server and client, and `fwd doctor`.
package enum Sock {
    #if canImport(Glibc)
    package static let stream = Int32(SOCK_STREAM.rawValue)
    package static let noSignal = Int32(MSG_NOSIGNAL)
    #else
    package static let stream = SOCK_STREAM
    package static let noSignal: Int32 = 0
    #endif

    package static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// Resolves a numeric address or "localhost"; never touches DNS for other names.
    package static func resolve(host: String, port: Int, passive: Bool = false) throws -> [(family: Int32, addr: Data)] {
        var hints = addrinfo()
        hints.ai_socktype = stream
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | (host == "localhost" ? 0 : AI_NUMERICHOST)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else {
            throw SocketError("cannot resolve \(host):\(port): \(String(cString: gai_strerror(rc))) (use a numeric address or localhost)")
        }
        defer { freeaddrinfo(list) }
        var result: [(Int32, Data)] = []
        var cur: UnsafeMutablePointer<addrinfo>? = list
        while let ai = cur {
            result.append((ai.pointee.ai_family, Data(bytes: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen))))
            cur = ai.pointee.ai_next
        }
        return result
    }

    package static func makeSocket(family: Int32) throws -> Int32 {
        let fd = socket(family, stream, 0)
        guard fd >= 0 else { throw SocketError("socket(): \(errorText())") }
        // Children (sshd, ssh) must not inherit our sockets.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        #if canImport(Darwin)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        return fd
    }

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

    package static func setTimeout(_ fd: Int32, _ option: Int32, seconds: Double) {
        let s = max(seconds, 0.001)
        var tv = timeval(tv_sec: Int(s), tv_usec: .init((s - s.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    package static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}

