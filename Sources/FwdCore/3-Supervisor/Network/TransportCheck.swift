import Foundation

/// Asks the server something through a live master and waits a short while for any answer: proof that the
/// master's TCP connection still carries data, which `ssh -O check` (a local question) cannot give.
/// After a network change, wake or `fwd reconnect`; the dynamic probe's round trip is `MasterProbeContext`'s.
enum TransportCheck {
    struct Outcome: Sendable, Equatable {
        /// The server answered through the master.
        var answered: Bool
        var seconds: Double
    }

    /// One fresh round trip through the master (`MuxClient.transportRoundTrip`), no ssh process started.
    static func run(socket: String, timeout: Double) async -> Outcome {
        let start = ContinuousClock.now
        let result = await MuxClient.transportRoundTrip(socket, until: start + .milliseconds(Int(timeout * 1000)))
        switch result {
        case .success(let rtt): return Outcome(answered: true, seconds: rtt.inSeconds)
        case .failure: return Outcome(answered: false, seconds: (ContinuousClock.now - start).inSeconds)
        }
    }

    /// How long to wait for the answer: 300 ms, or three times what a check took on this master right after it
    /// connected (a slow link's round trip), so latency is not mistaken for a dead path.
    static func timeout(baseline: Double?) -> Double {
        max(0.3, 3 * (baseline ?? 0))
    }
}
