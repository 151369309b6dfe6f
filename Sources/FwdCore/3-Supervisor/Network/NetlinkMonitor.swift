import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if os(Linux)

/// Listens to the kernel's rtnetlink multicast groups for links, addresses and routes (IPv4 and IPv6). Joining
/// them needs no privilege. One socket for the life of the supervisor, read by one dedicated thread that blocks
/// in poll(2): a thread per socket rather than per wait, and the events reach the stream the moment they happen.
package final class NetlinkMonitor: NetworkMonitor, @unchecked Sendable {
    private let fd: Int32
    private let wake: [Int32]
    private let lock = NSLock()
    private var sinks: [AsyncStream<NetworkChange>.Continuation] = []
    private var stopped = false

    static let groups: UInt32 = 0x1 /* LINK */ | 0x10 /* IPV4_IFADDR */ | 0x40 /* IPV4_ROUTE */
        | 0x100 /* IPV6_IFADDR */ | 0x400 /* IPV6_ROUTE */

    package init() throws {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0 /* NETLINK_ROUTE */)
        guard fd >= 0 else { throw NetworkMonitorError.failed("socket(AF_NETLINK)", errno) }
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // struct sockaddr_nl: family(2), pad(2), pid(4) — 0 lets the kernel pick —, groups(4).
        var address = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { for i in 0..<2 { address[i] = $0[i] } }
        withUnsafeBytes(of: Self.groups) { for i in 0..<4 { address[8 + i] = $0[i] } }
        let bound = address.withUnsafeBytes { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12) }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw NetworkMonitorError.failed("bind(AF_NETLINK)", code)
        }
        var pipeFds: [Int32] = [-1, -1]
        guard pipe(&pipeFds) == 0 else {
            let code = errno
            close(fd)
            throw NetworkMonitorError.failed("pipe", code)
        }
        for p in pipeFds { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        self.fd = fd
        self.wake = pipeFds
        let thread = Thread { [self] in readLoop() }
        thread.name = "fwd-netlink"
        thread.start()
    }

    package func changes() -> AsyncStream<NetworkChange> {
        let (stream, sink) = AsyncStream<NetworkChange>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let accepted = lock.withLock {
            if !stopped { sinks.append(sink) }
            return !stopped
        }
        if !accepted { sink.finish() }
        return stream
    }

    package func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
    }

    private func readLoop() {
        var interpreter = NetlinkInterpreter { index in
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
            return if_indextoname(UInt32(bitPattern: index), &name) != nil ? NetlinkMessage.cString(name.map { UInt8(bitPattern: $0) }) : nil
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        defer { finish() }
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            let n = recv(fd, &buffer, buffer.count, 0)
            let messages: [NetlinkMessage]
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                // The socket's buffer overflowed: some changes were lost, so treat it as "something changed".
                guard errno == ENOBUFS else { return }
                messages = [.overflow]
            } else {
                messages = NetlinkMessage.parse(Array(buffer[0..<n]))
            }
            let changes = messages.compactMap { interpreter.interpret($0) }
            guard !changes.isEmpty else { continue }
            let current = lock.withLock { sinks }
            for change in changes { for sink in current { sink.yield(change) } }
        }
    }

    private func finish() {
        let current = lock.withLock {
            stopped = true
            defer { sinks = [] }
            return sinks
        }
        for sink in current { sink.finish() }
        close(fd)
        close(wake[0])
        close(wake[1])
    }
}
#endif

package enum NetworkMonitorError: Error, CustomStringConvertible {
    case failed(String, Int32)

    package var description: String {
        switch self {
        case .failed(let call, let code): "cannot watch the network: \(call) failed: \(String(cString: strerror(code)))"
        }
    }
}
