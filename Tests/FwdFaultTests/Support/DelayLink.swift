import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// A point-to-point link between namespaces C and A that delays every packet: a TUN device in each namespace
/// and a relay thread in the test process that writes each packet read from one into the other after
/// mean ± jitter milliseconds (uniform, seeded). Packets keep their order. It stands in for `tc netem`, which this
/// kernel lacks (CONFIG_NET_SCH_NETEM is not set).
final class DelayLink: @unchecked Sendable {
    let meanMs: Double
    let jitterMs: Double
    private let clientFD: Int32
    private let serverFD: Int32
    private let lock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    private var relayedCount = 0
    /// Packets relayed so far, for the test log.
    var relayed: Int { lock.withLock { relayedCount } }

    init(client: String, server: String, meanMs: Double, jitterMs: Double, seed: UInt64 = 0xde1a7) throws {
        self.meanMs = meanMs
        self.jitterMs = jitterMs
        clientFD = try inNamespace(client) { try Self.openTUN("tunc") }
        do {
            serverFD = try inNamespace(server) { try Self.openTUN("tuna") }
        } catch {
            close(clientFD)
            throw error
        }
        for (ns, dev, address) in [(client, "tunc", Topology.clientAddress), (server, "tuna", Topology.serverAddress)] {
            try run(["ip", "-n", ns, "addr", "add", "\(address)/24", "dev", dev])
            try run(["ip", "-n", ns, "link", "set", dev, "up"])
        }
        let thread = Thread { [self] in relay(seed: seed) }
        thread.start()
    }

    func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        finished.wait()
        close(clientFD)
        close(serverFD)
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private static func openTUN(_ name: String) throws -> Int32 {
        let fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw CommandFailed(description: "open /dev/net/tun: \(String(cString: strerror(errno)))") }
        // struct ifreq: 16 bytes of name, then the flags (IFF_TUN | IFF_NO_PI) in the union.
        var ifr = [UInt8](repeating: 0, count: 40)
        for (i, byte) in name.utf8.enumerated() { ifr[i] = byte }
        let flags: UInt16 = 0x0001 | 0x1000
        ifr[16] = UInt8(flags & 0xff)
        ifr[17] = UInt8(flags >> 8)
        let tunSetIFF: UInt = 0x4004_54ca
        let rc = ifr.withUnsafeMutableBytes { ioctl(fd, tunSetIFF, $0.baseAddress!) }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw CommandFailed(description: "TUNSETIFF \(name): \(String(cString: strerror(code)))")
        }
        return fd
    }

    private struct Pending {
        var due: Double
        var packet: [UInt8]
    }

    private func relay(seed: UInt64) {
        defer { finished.signal() }
        var rng = SeededRandom(seed: seed)
        // Index 0: C→A (read from C's device, written to A's); 1: A→C.
        let from = [clientFD, serverFD], to = [serverFD, clientFD]
        var queues: [[Pending]] = [[], []]
        var lastDue = [0.0, 0.0]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !isStopped {
            let now = Self.now()
            for direction in 0..<2 {
                while let first = queues[direction].first, first.due <= now {
                    queues[direction].removeFirst()
                    _ = first.packet.withUnsafeBytes { write(to[direction], $0.baseAddress, $0.count) }
                    lock.withLock { relayedCount += 1 }
                }
            }
            let nextDue = queues.compactMap { $0.first?.due }.min()
            let waitMs = nextDue.map { max(0, Int32(($0 - Self.now()) * 1000)) } ?? 50
            var fds = from.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, 2, min(waitMs, 50)) >= 0 || errno == EINTR else { return }
            for direction in 0..<2 where fds[direction].revents & Int16(POLLIN) != 0 {
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(from[direction], $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    let delay = (meanMs + jitterMs * (rng.unit() * 2 - 1)) / 1000
                    let due = max(lastDue[direction], Self.now() + delay)
                    lastDue[direction] = due
                    queues[direction].append(Pending(due: due, packet: Array(buffer[0..<n])))
                }
            }
        }
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A small seeded generator (xorshift64) so every random choice in these tests reproduces.
struct SeededRandom: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9e37_79b9 : seed }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}
