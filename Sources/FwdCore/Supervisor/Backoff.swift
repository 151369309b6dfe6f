/// Capped exponential backoff with jitter. A master that stayed up for `stablePeriod` resets it, so a host that
/// fails once a day reconnects fast, and one that flaps settles at `cap`.
public struct Backoff: Sendable, Equatable {
    public var base: Double = 0.5
    public var cap: Double = 30
    public var stablePeriod: Double = 60
    public private(set) var attempt = 0

    public init(base: Double = 0.5, cap: Double = 30, stablePeriod: Double = 60) {
        self.base = base
        self.cap = cap
        self.stablePeriod = stablePeriod
    }

    /// The delay before the next attempt, in seconds: base·2ⁿ capped, ±20 % jitter so many tunnels do not
    /// reconnect in lockstep.
    public mutating func next(jitter: Double = Double.random(in: -1...1)) -> Double {
        let raw = min(cap, base * Double(1 << min(attempt, 20)))
        attempt += 1
        return max(0.05, raw * (1 + 0.2 * jitter))
    }

    /// Called when a master exits: resets when it had been up long enough.
    public mutating func masterExited(afterUp seconds: Double?) {
        if let seconds, seconds >= stablePeriod { attempt = 0 }
    }

    public mutating func reset() { attempt = 0 }
}
