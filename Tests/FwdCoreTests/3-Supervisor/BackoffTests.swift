import Testing
@testable import FwdCore

@Suite struct BackoffTests {
    @Test func reconnectDelaysDoubleFromTheBaseToTheCapWithJitterOfAFifth() {
        var b = Backoff()
        #expect((0..<8).map { _ in b.next(jitter: 0) } == [0.5, 1, 2, 4, 8, 16, 30, 30])
        var high = Backoff(), low = Backoff()
        #expect(high.next(jitter: 1) == 0.6)
        #expect(low.next(jitter: -1) == 0.4)
        // A tiny base never goes below 50 ms, whatever the jitter.
        var tiny = Backoff(base: 0.01)
        #expect(tiny.next(jitter: -1) == 0.05)
    }

    @Test func aMasterUpForTheStablePeriodStartsOverAndAShorterOneDoesNot() {
        var b = Backoff()
        _ = b.next(jitter: 0)
        _ = b.next(jitter: 0)
        b.masterExited(afterUp: 59)
        #expect(b.attempt == 2)
        b.masterExited(afterUp: nil)
        #expect(b.attempt == 2, "a master that never came up does not reset")
        b.masterExited(afterUp: 60)
        #expect(b.next(jitter: 0) == 0.5)
    }

    @Test func aHeldRemoteListenerIsAskedForAgainAfterOneTwoFourThenEightSeconds() {
        #expect((0..<6).map { Backoff.remoteListener.delay(attempt: $0) } == [1, 2, 4, 8, 8, 8])
        // However many retries are configured, the delay stays at the cap (a shift past 63 bits would give 0).
        #expect(Backoff.remoteListener.delay(attempt: 100) == 8)
        #expect(Backoff().delay(attempt: 100) == 30)
    }
}
