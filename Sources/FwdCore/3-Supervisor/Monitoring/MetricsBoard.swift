import Foundation

/// A tunnel's state change, as the hooks and notifications are told of it.
package struct StateChange: Sendable, Equatable {
    package var tunnel: String
    package var host: String
    package var from: TunnelState
    package var to: TunnelState
    package var reason: String
}

/// What the metrics show, in the supervisor's memory: it follows the writes the store writer has committed, so a
/// scrape copies a snapshot under a lock and never waits on the writer or on SQLite, and a counter shown is never
/// ahead of what a restarted supervisor reads back (docs/usage.md, "Monitoring").
package final class MetricsBoard: Sendable {
    package struct TunnelInfo: Sendable, Equatable {
        package var host: String
        package var state: TunnelState
        package var restarts: Int
        /// `-R 0` forwards' ports, by spec.
        package var allocated: [String: Int]
    }

    package struct Snapshot: Sendable {
        package var version: String
        package var startTime: Date
        package var tunnels: [String: TunnelInfo] = [:]
        /// Hosts whose master answers on its control socket.
        package var mastersUp: Set<String> = []
        package var tallies: [TallyKey: Tally] = [:]
    }

    private let state: Locked<Snapshot>

    package init(version: String, startTime: Date = Date()) {
        state = Locked(Snapshot(version: version, startTime: startTime))
    }

    /// Starts from what the database holds: the tunnels' recorded rows and the counters' totals. Masters are
    /// never up at first (a previous supervisor's are reaped).
    package func load(_ store: Store) throws {
        let rows = try store.tunnels(), tallies = try store.tallies()
        state.withLock { s in
            for row in rows {
                let ports = row.forwards.reduce(into: [String: Int]()) { if let p = $1.allocatedPort { $0[$1.spec] = p } }
                s.tunnels[row.name] = TunnelInfo(host: row.host, state: row.state, restarts: row.restarts, allocated: ports)
            }
            s.tallies = tallies
        }
    }

    /// What `fwd metrics` shows with no supervisor running: the store's counters, and nothing up.
    package static func offline(_ store: Store, version: String) throws -> MetricsBoard {
        let board = MetricsBoard(version: version)
        try board.load(store)
        board.state.withLock { s in
            for name in s.tunnels.keys where s.tunnels[name]?.state != .failed { s.tunnels[name]?.state = .down }
        }
        return board
    }

    /// Applies writes the store has committed; returns the state changes among them, in order.
    @discardableResult
    func committed(_ writes: [StoreWrite]) -> [StateChange] {
        state.withLock { s in
            var changes: [StateChange] = []
            for write in writes {
                switch write {
                case .state(let tunnel, let to, _, let error, let message):
                    // A row the supervisor has not written yet was made by `fwd up`, as `down`.
                    var info = s.tunnels[tunnel] ?? TunnelInfo(host: "", state: .down, restarts: 0, allocated: [:])
                    if info.state != to {
                        changes.append(StateChange(tunnel: tunnel, host: info.host, from: info.state, to: to,
                                                   reason: error.map { "\(message): \($0)" } ?? message))
                        info.state = to
                    }
                    s.tunnels[tunnel] = info
                case .restart(let tunnel, _):
                    s.tunnels[tunnel]?.restarts += 1
                case .allocatedPort(let tunnel, let spec, let port):
                    s.tunnels[tunnel]?.allocated[spec] = port
                case .saveMaster(let record):
                    s.mastersUp.insert(record.host)
                case .removeMaster(let host):
                    s.mastersUp.remove(host)
                case .tally(let key, let samples):
                    s.tallies[key, default: Tally()].add(samples, bounds: key.metric.bounds)
                case .probe, .log, .retrying:
                    break
                }
            }
            return changes
        }
    }

    /// Tells the board which host each tunnel now runs on (from the config the supervisor applies).
    package func hosts(_ tunnels: [Tunnel]) {
        state.withLock { s in
            for t in tunnels {
                s.tunnels[t.name, default: TunnelInfo(host: t.host, state: .down, restarts: 0, allocated: [:])].host = t.host
            }
        }
    }

    /// Tunnels removed from the config (by an edit, or `fwd rm`) end their series once nothing of them runs, as
    /// the store forgets their rows (`Store.forgetDown`).
    package func forgetDown(keeping names: Set<String>) {
        state.withLock { s in
            for (name, t) in s.tunnels where !names.contains(name) && (t.state == .down || t.state == .failed) {
                s.tunnels[name] = nil
                s.tallies[TallyKey(.probeSeconds, name)] = nil
                s.tallies[TallyKey(.probeFailures, name)] = nil
            }
        }
    }

    package var snapshot: Snapshot { state.current }

    /// The Prometheus text exposition of the current snapshot.
    package func exposition() -> String { MetricsText.render(snapshot) }
}
