import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// The descriptor layer's floor: `Descriptor` closes exactly once, and the `Reactor` reports readiness,
/// deadlines, cancellation and closing, and never hands a wait to a descriptor number reused after a close.
@Suite struct ReactorTests {
    private static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    private static func writeByte(_ fd: Int32) {
        var byte: UInt8 = 7
        _ = write(fd, &byte, 1)
    }

    @Test func descriptorClosesWhenItsOwnerLetsGo() throws {
        var raw: Int32 = -1
        do {
            let pipe = try Posix.pipe()
            raw = pipe.first.raw
            #expect(Self.isOpen(raw))
        }
        #expect(!Self.isOpen(raw))
    }

    @Test func descriptorClosesExactlyOnce() throws {
        // A Descriptor whose number the kernel hands out again must not close the new owner's descriptor.
        var number: Int32 = -1
        func consume(_ d: consuming Descriptor) { d.close() }
        do {
            let pipe = try Posix.pipe()
            number = pipe.first.raw
            consume(pipe.first)
            #expect(!Self.isOpen(number))
            // The next descriptor reuses the lowest free number: the one just closed.
            let reused = try Posix.pipe()
            #expect(reused.first.raw == number)
            // `pipe` (partly consumed) goes out of scope here: its second end closes, its first is not closed again.
            _ = reused
        }
        let again = try Posix.pipe()
        let probe = again.first.raw
        #expect(Self.isOpen(probe))
    }

    @Test func releaseGivesUpOwnershipWithoutClosing() throws {
        let pipe = try Posix.pipe()
        let raw = pipe.first.release()
        #expect(Self.isOpen(raw))
        close(raw)
    }

    @Test func waitReportsReadinessAtOnceAndLater() async throws {
        let pipe = try Posix.pipe()
        let reader = pipe.first.raw, writer = pipe.second.raw
        Self.writeByte(writer)
        #expect(await Reactor.shared.wait(reader, for: .read, until: .now + .seconds(1)) == .ready)
        var scratch = [UInt8](repeating: 0, count: 8)
        _ = read(reader, &scratch, 8)
        let start = ContinuousClock.now
        Task {
            try? await Task.sleep(for: .milliseconds(50))
            Self.writeByte(writer)
        }
        #expect(await Reactor.shared.wait(reader, for: .read, until: .now + .seconds(5)) == .ready)
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(40) && waited < .seconds(2))
    }

    @Test func waitTimesOutAtItsDeadline() async throws {
        let pipe = try Posix.pipe()
        let start = ContinuousClock.now
        #expect(await Reactor.shared.wait(pipe.first.raw, for: .read, until: .now + .milliseconds(80)) == .timedOut)
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(80) && waited < .seconds(2))
        // A wait without a deadline shares the loop with ones that have one: the nearest deadline counts.
        #expect(await Reactor.shared.wait(pipe.first.raw, for: .read, until: .now) == .timedOut)
    }

    @Test func cancellingTheTaskEndsTheWait() async throws {
        let pipe = try Posix.pipe()
        let raw = pipe.first.raw
        let task = Task { await Reactor.shared.wait(raw, for: .read) }
        try await Task.sleep(for: .milliseconds(30))
        let start = ContinuousClock.now
        task.cancel()
        #expect(await task.value == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(1))
        // A task cancelled before it waits does not wait at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await Reactor.shared.wait(raw, for: .read)
        }
        #expect(await early.value == .cancelled)
    }

    @Test func closingTheDescriptorEndsItsWaitAndAReusedNumberGetsNoOldWait() async throws {
        let first = try Posix.pipe()
        let number = first.first.raw
        let writer = first.second.raw
        _ = writer
        let waiting = Task { await Reactor.shared.wait(number, for: .read) }
        // Let the wait reach the reactor's table.
        for _ in 0..<100 where Reactor.shared.waitCount == 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(Reactor.shared.waitCount >= 1)
        first.first.close()
        #expect(await waiting.value == .closed)
        // The number comes back for a new pipe, whose data must not wake or reach anything of the old wait.
        let second = try Posix.pipe()
        #expect(second.first.raw == number)
        Self.writeByte(second.second.raw)
        let fresh = await Reactor.shared.wait(second.first.raw, for: .read, until: .now + .seconds(1))
        #expect(fresh == .ready)
        var byte: UInt8 = 0
        #expect(read(second.first.raw, &byte, 1) == 1 && byte == 7)
    }

    @Test func readAndWriteWaitsOnOneDescriptorAreIndependent() async throws {
        let pair = try UnixSocket.pair(nonBlocking: true)
        let a = pair.first.raw, b = pair.second.raw
        // Fill a's send buffer so it is not writable.
        var chunk = [UInt8](repeating: 1, count: 65536)
        while chunk.withUnsafeBytes({ Posix.sendSome(a, $0) }) > 0 {}
        let reading = Task { await Reactor.shared.wait(a, for: .read, until: .now + .seconds(5)) }
        let writing = Task { await Reactor.shared.wait(a, for: .write, until: .now + .seconds(5)) }
        try await Task.sleep(for: .milliseconds(30))
        // Draining b makes a writable; the read wait stays.
        while read(b, &chunk, chunk.count) > 0 {}
        #expect(await writing.value == .ready)
        Self.writeByte(b)
        #expect(await reading.value == .ready)
    }

    @Test func manyWaitsAreServedByOneLoop() async throws {
        var pipes: [(Int32, Int32)] = []
        for _ in 0..<64 {
            let pipe = try Posix.pipe()
            pipes.append((pipe.first.release(), pipe.second.release()))
        }
        defer { for (r, w) in pipes { close(r); close(w) } }
        let results = await withTaskGroup(of: WaitOutcome.self) { group in
            for (r, _) in pipes { group.addTask { await Reactor.shared.wait(r, for: .read, until: .now + .seconds(5)) } }
            try? await Task.sleep(for: .milliseconds(30))
            for (_, w) in pipes { Self.writeByte(w) }
            return await group.reduce(into: [WaitOutcome]()) { $0.append($1) }
        }
        #expect(results.count == 64 && results.allSatisfy { $0 == .ready })
    }
}
