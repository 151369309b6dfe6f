import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

enum PollOutcome: Sendable, Equatable {
    case ready
    case timedOut
    case failed(String)
}

/// Waits for many non-blocking descriptors at once on one thread of its own, so probe I/O neither blocks the
/// cooperative pool nor needs a thread per probe: every probe of the process shares this one poll(2) loop.
final class IOPoller: @unchecked Sendable {
    static let shared = IOPoller()

    private struct Waiter {
        var fd: Int32
        var events: Int16
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<PollOutcome, Never>
    }

    private let lock = NSLock()
    private var waiters: [UInt64: Waiter] = [:]
    private var nextID: UInt64 = 0
    /// A pipe whose read end is in every poll set; a byte on it makes the loop pick up new waiters.
    private let wake: (read: Int32, write: Int32)

    private init() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { fatalError("fwd: cannot create the probe poller's pipe: \(errorText(errno))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        wake = (fds[0], fds[1])
        let thread = Thread { [self] in loop() }
        thread.name = "fwd-probe-poll"
        thread.start()
    }

    /// Suspends until `fd` is ready for `events` (POLLHUP and POLLERR count as ready: the next read, write or
    /// SO_ERROR says what happened), or until `deadline`.
    func wait(fd: Int32, events: Int16, until deadline: ContinuousClock.Instant) async -> PollOutcome {
        // A look without waiting first: most answers on loopback are already there.
        var entry = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&entry, 1, 0)
        if rc > 0 { return .ready }
        if rc < 0 && errno != EINTR { return .failed("poll(): \(errorText(errno))") }
        if deadline <= .now { return .timedOut }
        return await withCheckedContinuation { continuation in
            lock.withLock {
                nextID += 1
                waiters[nextID] = Waiter(fd: fd, events: events, deadline: deadline, continuation: continuation)
            }
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        }
    }

    private func loop() {
        while true {
            let current = lock.withLock { waiters }
            let ids = Array(current.keys)
            var entries = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            entries += ids.map { pollfd(fd: current[$0]!.fd, events: current[$0]!.events, revents: 0) }
            let now = ContinuousClock.now
            let nearest = current.values.map(\.deadline).min()
            let timeout: Int32 = nearest.map { Self.milliseconds(until: $0, from: now) } ?? -1
            let rc = poll(&entries, nfds_t(entries.count), timeout)
            if rc < 0 && errno != EINTR {
                let text = "poll(): \(errorText(errno))"
                finish(ids) { _ in .failed(text) }
                continue
            }
            if entries[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wake.read, &drain, drain.count) > 0 {}
            }
            let after = ContinuousClock.now
            var outcomes: [UInt64: PollOutcome] = [:]
            for (index, id) in ids.enumerated() {
                if entries[index + 1].revents != 0 {
                    outcomes[id] = .ready
                } else if current[id]!.deadline <= after {
                    outcomes[id] = .timedOut
                }
            }
            finish(Array(outcomes.keys)) { outcomes[$0]! }
        }
    }

    private func finish(_ ids: [UInt64], _ outcome: (UInt64) -> PollOutcome) {
        let done: [(CheckedContinuation<PollOutcome, Never>, PollOutcome)] = lock.withLock {
            ids.compactMap { id in waiters.removeValue(forKey: id).map { ($0.continuation, outcome(id)) } }
        }
        for (continuation, result) in done { continuation.resume(returning: result) }
    }

    /// Rounded up, so the loop never wakes just before a deadline and spins.
    static func milliseconds(until deadline: ContinuousClock.Instant, from now: ContinuousClock.Instant) -> Int32 {
        let left = deadline - now
        if left <= .zero { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(min(Int64(Int32.max), seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }
}
