#if os(macOS)
import Foundation
import Network

/// macOS: the system's path monitor (NWPathMonitor). It says that the path changed (an interface came or went,
/// the primary interface changed) but not which address, so every change is `unspecified` with what the new path
/// looks like; the supervisor then checks each master with a round trip. Written for macOS and not compiled or run
/// on the Linux machine fwd is developed on.
package final class PathMonitor: NetworkMonitor, @unchecked Sendable {
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "fwd.path-monitor")
    private let lock = NSLock()
    private var sinks: [AsyncStream<NetworkChange>.Continuation] = []
    private var last: String?

    package init() throws {
        monitor.pathUpdateHandler = { [weak self] path in self?.update(path) }
        monitor.start(queue: queue)
    }

    private func update(_ path: NWPath) {
        let interfaces = path.availableInterfaces.map(\.name).joined(separator: ", ")
        let summary = "path \(path.status == .satisfied ? "usable" : "unusable") via \(interfaces.isEmpty ? "no interface" : interfaces)"
        let current: [AsyncStream<NetworkChange>.Continuation] = lock.withLock {
            // The first update describes the path at start; only later ones are changes.
            defer { last = summary }
            return last == nil || last == summary ? [] : sinks
        }
        for sink in current { sink.yield(.unspecified(summary)) }
    }

    package func changes() -> AsyncStream<NetworkChange> {
        let (stream, sink) = AsyncStream<NetworkChange>.makeStream(bufferingPolicy: .bufferingNewest(64))
        lock.withLock { sinks.append(sink) }
        return stream
    }

    package func stop() {
        monitor.cancel()
        let current = lock.withLock {
            defer { sinks = [] }
            return sinks
        }
        for sink in current { sink.finish() }
    }
}
#endif
