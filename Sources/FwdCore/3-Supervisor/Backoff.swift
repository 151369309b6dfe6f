/// Capped exponential backoff with jitter. A master that stayed up for `stablePeriod` resets it, so a host that
/// fails once a day reconnects fast, and one that flaps settles at `cap`.
package struct Backoff: Sendable, Equatable {
    package var base: Double = 0.5
    package var cap: Double = 30
    package var stablePeriod: Double = 60
    package private(set) var attempt = 0

    package init(base: Double = 0.5, cap: Double = 30, stablePeriod: Double = 60) {
        self.base = base
        self.cap = cap
        self.stablePeriod = stablePeriod
    }

    /// The delay before the next attempt, in seconds: base·2ⁿ capped, ±20 % jitter so many tunnels do not
    /// reconnect in lockstep.
    package mutating func next(jitter: Double = Double.random(in: -1...1)) -> Double {
        let raw = min(cap, base * Double(1 << min(attempt, 20)))
        attempt += 1
        return max(0.05, raw * (1 + 0.2 * jitter))
    }

    /// Called when a master exits: resets when it had been up long enough.
    package mutating func masterExited(afterUp seconds: Double?) {
        if let seconds, seconds >= stablePeriod { attempt = 0 }
    }

    package mutating func reset() { attempt = 0 }
}
