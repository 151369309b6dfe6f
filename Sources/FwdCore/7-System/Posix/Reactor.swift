import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a descriptor is waited for.
package struct Readiness: OptionSet, Sendable {
    package let rawValue: Int16
    package init(rawValue: Int16) { self.rawValue = rawValue }
    package static let read = Readiness(rawValue: Int16(POLLIN))
    package static let write = Readiness(rawValue: Int16(POLLOUT))
}

package enum WaitOutcome: Sendable, Equatable {
    /// Ready for what was asked, or POLLHUP/POLLERR: the next read, write or SO_ERROR says what happened.
    case ready
    case timedOut
    /// The waiting task was cancelled.
    case cancelled
    /// The descriptor was closed (by its `Descriptor`) while the wait was on.
    case closed
    case failed(String)
}

/// Waits for readiness of many non-blocking descriptors at once, on one thread of its own that blocks in
/// poll(2): every probe, control connection, askpass relay, netlink and inotify watch of the process shares
/// this loop, so the daemon needs no thread per socket and never blocks the cooperative pool. The shape of
/// swift-subprocess's child-exit monitor: one thread, a table of continuations keyed by id.
///
/// Waits are keyed by id, never by descriptor number: closing a `Descriptor` first resumes every wait on it
/// (`.closed`), and a number the kernel hands out again is never matched to an old wait. A wait ends when its
/// task is cancelled, too (`.cancelled`).
package final class Reactor: @unchecked Sendable {
    private static let instance = Locked<Reactor?>(nil)

    /// The process's reactor, started on first use.
    package static var shared: Reactor {
        instance.withLock { current in
            if let current { return current }
            let reactor = Reactor()
            current = reactor
            return reactor
        }
    }

    /// Called by `Descriptor` before it closes `fd`: a process that never waited starts no reactor for it.
    static func retire(_ fd: Int32) {
        instance.withLock { $0 }?.retire(fd)
    }

    private struct Waiter {
        var fd: Int32
        var events: Int16
        var deadline: ContinuousClock.Instant?
        var continuation: CheckedContinuation<WaitOutcome, Never>
    }

    private enum Slot {
        /// Registered by the task, continuation not yet stored.
        case pending
        case cancelled
        case waiting(Waiter)
    }

    private let lock = NSLock()
    private var slots: [UInt64: Slot] = [:]
    private var nextID: UInt64 = 0
    /// The read end is in every poll set; a byte on it makes the loop pick up a changed table.
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private init() {
        do {
            // Raw numbers, not `Descriptor`s: the reactor's pipe lives as long as the process.
            let ends = try Posix.pipe()
            wakeRead = ends.first.release()
            wakeWrite = ends.second.release()
        } catch {
            fatalError("fwd: cannot create the reactor's pipe: \(error)")
        }
        let thread = Thread { [self] in loop() }
        thread.name = "fwd-reactor"
        thread.start()
    }

    /// Suspends until `fd` is ready for `events`, `deadline` passes (nil: no deadline), the task is
    /// cancelled, or the descriptor is closed.
    package func wait(_ fd: Int32, for events: Readiness, until deadline: ContinuousClock.Instant? = nil) async -> WaitOutcome {
        if Task.isCancelled { return .cancelled }
        // A look without waiting first: most answers on loopback are already there.
        var entry = pollfd(fd: fd, events: events.rawValue, revents: 0)
        let rc = poll(&entry, 1, 0)
        if rc > 0 { return entry.revents & Int16(POLLNVAL) != 0 ? .closed : .ready }
        if rc < 0 && errno != EINTR { return .failed("poll(): \(Posix.errorText())") }
        if let deadline, deadline <= .now { return .timedOut }
        let id: UInt64 = lock.withLock {
            nextID += 1
            slots[nextID] = .pending
            return nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<WaitOutcome, Never>) in
                let stored: Bool = lock.withLock {
                    guard case .pending = slots[id] else {
                        slots[id] = nil
                        return false
                    }
                    slots[id] = .waiting(Waiter(fd: fd, events: events.rawValue, deadline: deadline, continuation: continuation))
                    return true
                }
                if stored { poke() } else { continuation.resume(returning: .cancelled) }
            }
        } onCancel: {
            let waiter: Waiter? = lock.withLock {
                switch slots[id] {
                case .pending:
                    slots[id] = .cancelled
                    return nil
                case .waiting(let w):
                    slots[id] = nil
                    return w
                case .cancelled, nil:
                    return nil
                }
            }
            if let waiter {
                waiter.continuation.resume(returning: .cancelled)
                poke()
            }
        }
    }

    /// The number of waits in the table (for tests).
    var waitCount: Int {
        lock.withLock { slots.values.filter { if case .waiting = $0 { true } else { false } }.count }
    }

    private func retire(_ fd: Int32) {
        let closed: [Waiter] = lock.withLock {
            var found: [Waiter] = []
            for (id, slot) in slots {
                if case .waiting(let w) = slot, w.fd == fd {
                    found.append(w)
                    slots[id] = nil
                }
            }
            return found
        }
        guard !closed.isEmpty else { return }
        for waiter in closed { waiter.continuation.resume(returning: .closed) }
        poke()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func loop() {
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            let current: [(UInt64, Waiter)] = lock.withLock {
                slots.compactMap { id, slot in if case .waiting(let w) = slot { (id, w) } else { nil } }
            }
            var entries = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            entries += current.map { pollfd(fd: $0.1.fd, events: $0.1.events, revents: 0) }
            let nearest = current.compactMap(\.1.deadline).min()
            let timeout: Int32 = nearest.map { Self.milliseconds(until: $0, from: .now) } ?? -1
            let rc = poll(&entries, nfds_t(entries.count), timeout)
            if rc < 0 && errno != EINTR {
                let text = "poll(): \(Posix.errorText())"
                finish(current.map { ($0.0, WaitOutcome.failed(text)) })
                continue
            }
            if entries[0].revents != 0 {
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            let after = ContinuousClock.now
            var outcomes: [(UInt64, WaitOutcome)] = []
            for (index, (id, waiter)) in current.enumerated() {
                let revents = entries[index + 1].revents
                if revents & Int16(POLLNVAL) != 0 {
                    outcomes.append((id, .closed))
                } else if revents != 0 {
                    outcomes.append((id, .ready))
                } else if let deadline = waiter.deadline, deadline <= after {
                    outcomes.append((id, .timedOut))
                }
            }
            finish(outcomes)
        }
    }

    /// Resumes the waits that are still in the table (one may have been cancelled or closed meanwhile).
    private func finish(_ outcomes: [(UInt64, WaitOutcome)]) {
        guard !outcomes.isEmpty else { return }
        let done: [(CheckedContinuation<WaitOutcome, Never>, WaitOutcome)] = lock.withLock {
            outcomes.compactMap { id, outcome in
                guard case .waiting(let w) = slots[id] else { return nil }
                slots[id] = nil
                return (w.continuation, outcome)
            }
        }
        for (continuation, outcome) in done { continuation.resume(returning: outcome) }
    }

    /// Blocks the calling thread until `fd` is ready or `deadline` passes: for synchronous callers only (the
    /// CLI's requests, `fwd doctor`), never on the cooperative pool.
    package static func waitBlocking(_ fd: Int32, for events: Readiness, until deadline: ContinuousClock.Instant?) -> WaitOutcome {
        var entry = pollfd(fd: fd, events: events.rawValue, revents: 0)
        while true {
            let timeout = deadline.map { milliseconds(until: $0, from: .now) } ?? -1
            let rc = poll(&entry, 1, timeout)
            if rc > 0 { return entry.revents & Int16(POLLNVAL) != 0 ? .closed : .ready }
            if rc == 0 { return .timedOut }
            if errno != EINTR { return .failed("poll(): \(Posix.errorText())") }
        }
    }

    /// Rounded up, so the loop never wakes just before a deadline and spins.
    static func milliseconds(until deadline: ContinuousClock.Instant, from now: ContinuousClock.Instant) -> Int32 {
        let left = deadline - now
        if left <= .zero { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(min(Int64(Int32.max), seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }
}
