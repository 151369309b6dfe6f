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

    /// A `-R` forward the server refuses because it still holds an old session's listener is asked for again
    /// after 1, 2, 4 and then every 8 s, without jitter: the server frees the port when its ClientAlive check
    /// ends that session, and the tunnel gives up after `SupervisorOptions.remoteListenerRetries` retries.
    package static let remoteListener = Backoff(base: 1, cap: 8)

    /// A local port another program holds is tried again after 0.5, 1, 2, 4 and then every 5 s, until it frees:
    /// no unprivileged kernel interface reports that a port was released (inotify sees no sockets; sock_diag's
    /// destroy notifications need CAP_NET_ADMIN), and a bind is the only exact test. Each check is one request
    /// on the local control socket, no traffic to the server.
    package static let localPort = Backoff(base: 0.5, cap: 5)

    /// The delay before attempt `n` (0 for the first), without jitter: base·2ⁿ capped at `cap`.
    package func delay(attempt n: Int) -> Double {
        min(cap, base * Double(1 << min(max(n, 0), 20)))
    }

    /// The delay before the next attempt, in seconds: base·2ⁿ capped, ±20 % jitter so many tunnels do not
    /// reconnect in lockstep.
    package mutating func next(jitter: Double = Double.random(in: -1...1)) -> Double {
        let raw = delay(attempt: attempt)
        attempt += 1
        return max(0.05, raw * (1 + 0.2 * jitter))
    }

    /// Called when a master exits: resets when it had been up long enough.
    package mutating func masterExited(afterUp seconds: Double?) {
        if let seconds, seconds >= stablePeriod { attempt = 0 }
    }

    package mutating func reset() { attempt = 0 }
}
