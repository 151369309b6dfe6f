import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if os(Linux)

/// Listens to the kernel's rtnetlink multicast groups for links, addresses and routes (IPv4 and IPv6). Joining
/// them needs no privilege. One socket for the life of the supervisor, read by a task that waits on the
/// process's `Reactor`: no thread of its own, and the events reach the stream the moment they happen.
package final class NetlinkMonitor: NetworkMonitor, @unchecked Sendable {
    private struct State {
        var sinks: [AsyncStream<NetworkChange>.Continuation] = []
        var stopped = false
        var reader: Task<Void, Never>?
    }

    private let state = Locked(State())

    static let groups: UInt32 = 0x1 /* LINK */ | 0x10 /* IPV4_IFADDR */ | 0x40 /* IPV4_ROUTE */
        | 0x100 /* IPV6_IFADDR */ | 0x400 /* IPV6_ROUTE */

    package init() throws {
        let raw = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0 /* NETLINK_ROUTE */)
        guard raw >= 0 else { throw NetworkMonitorError.failed("socket(AF_NETLINK)", errno) }
        let socket = Descriptor(raw)
        var size: Int32 = 1 << 20
        setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // struct sockaddr_nl: family(2), pad(2), pid(4) — 0 lets the kernel pick —, groups(4).
        var address = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { for i in 0..<2 { address[i] = $0[i] } }
        withUnsafeBytes(of: Self.groups) { for i in 0..<4 { address[8 + i] = $0[i] } }
        let bound = address.withUnsafeBytes { bind(raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12) }
        guard bound == 0 else { throw NetworkMonitorError.failed("bind(AF_NETLINK)", errno) }
        // The task owns the socket from here (a noncopyable value cannot be captured).
        let owned = socket.release()
        let reader = Task { [weak self] in await Self.readLoop(Descriptor(owned), monitor: self) }
        state.withLock { $0.reader = reader }
    }

    deinit { state.withLock { $0.reader }?.cancel() }

    package func changes() -> AsyncStream<NetworkChange> {
        let (stream, sink) = AsyncStream<NetworkChange>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let accepted = state.withLock {
            if !$0.stopped { $0.sinks.append(sink) }
            return !$0.stopped
        }
        if !accepted { sink.finish() }
        return stream
    }

    package func stop() {
        let reader = state.withLock { state -> Task<Void, Never>? in
            defer { state.stopped = true }
            return state.stopped ? nil : state.reader
        }
        reader?.cancel()
    }

    private static func readLoop(_ socket: consuming Descriptor, monitor: NetlinkMonitor?) async {
        weak let monitor = monitor
        defer { monitor?.finish() }
        var interpreter = NetlinkInterpreter { index in
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
            return if_indextoname(UInt32(bitPattern: index), &name) != nil ? NetlinkMessage.cString(name.map { UInt8(bitPattern: $0) }) : nil
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = recv(socket.raw, &buffer, buffer.count, 0)
            let messages: [NetlinkMessage]
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    switch await Reactor.shared.wait(socket.raw, for: .read) {
                    case .ready, .timedOut: continue
                    case .cancelled, .closed, .failed: return
                    }
                }
                // The socket's buffer overflowed: some changes were lost, so treat it as "something changed".
                guard errno == ENOBUFS else { return }
                messages = [.overflow]
            } else {
                messages = NetlinkMessage.parse(Array(buffer[0..<n]))
            }
            let changes = messages.compactMap { interpreter.interpret($0) }
            guard !changes.isEmpty, let current = monitor?.state.withLock({ $0.sinks }) else { continue }
            for change in changes { for sink in current { sink.yield(change) } }
        }
    }

    private func finish() {
        let current = state.withLock { state in
            state.stopped = true
            defer { state.sinks = [] }
            return state.sinks
        }
        for sink in current { sink.finish() }
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
