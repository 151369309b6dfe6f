import Foundation

/// What the metrics count (`fwd metrics`, docs/usage.md "Monitoring"): Prometheus counters and histograms must
/// never go down while a series lives, so their totals are kept in the database (the `tally` table), not in the
/// supervisor's memory, and a restarted supervisor carries on from them.
package enum TallyMetric: String, Sendable, Codable, CaseIterable {
    /// Seconds each probe of a tunnel's forwards took (subject: the tunnel).
    case probeSeconds
    /// Probes of a tunnel's forwards that did not pass (subject: the tunnel); every sample is 1.
    case probeFailures
    /// Seconds from starting a host's master to its control socket answering (subject: the host).
    case connectSeconds

    /// The histogram's upper bounds, in seconds; empty for a plain counter. Stored counts are per bucket in this
    /// order, so these bounds are part of the schema: changing them needs a migration.
    package var bounds: [Double] {
        switch self {
        // A probe times out after 2 s.
        case .probeSeconds: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2]
        case .probeFailures: []
        // Includes a login typed by a person, which takes seconds to minutes.
        case .connectSeconds: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
        }
    }
}

/// A counter or histogram's running totals.
package struct Tally: Sendable, Equatable, Codable {
    package var count: Int = 0
    package var sum: Double = 0
    /// Samples per bucket of `TallyMetric.bounds` (not cumulative); samples above the last bound are only in `count`.
    package var buckets: [Int] = []

    package init(count: Int = 0, sum: Double = 0, buckets: [Int] = []) {
        self.count = count
        self.sum = sum
        self.buckets = buckets
    }

    package mutating func add(_ samples: [Double], bounds: [Double]) {
        if buckets.count != bounds.count { buckets = Array(repeating: 0, count: bounds.count) }
        for sample in samples {
            count += 1
            sum += sample
            if let i = bounds.firstIndex(where: { sample <= $0 }) { buckets[i] += 1 }
        }
    }
}

/// A tally's identity: what it counts, and of which tunnel or host.
package struct TallyKey: Sendable, Hashable, Codable {
    package var metric: TallyMetric
    package var subject: String

    package init(_ metric: TallyMetric, _ subject: String) {
        self.metric = metric
        self.subject = subject
    }
}
