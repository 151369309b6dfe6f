import Foundation
import GRDB
import Testing
@testable import FwdCore

/// Counts the transactions that commit on a database: how many a batch of writes costs.
private final class CommitCounter: TransactionObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var commits = 0
    var count: Int { lock.withLock { commits } }

    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { true }
    func databaseDidChange(with event: DatabaseEvent) {}
    func databaseDidCommit(_ db: Database) { lock.withLock { commits += 1 } }
    func databaseDidRollback(_ db: Database) {}
}

private let wiki = ForwardStatus(kind: .local, spec: "127.0.0.1:8080:wiki.lan:80", probe: .http)

private func store(tunnels names: [String]) throws -> (Store, CommitCounter) {
    let store = try Store.inMemory()
    try store.setDesired(.up, recorded: names.map {
        TunnelStatus(name: $0, host: "office", desired: .down, state: .down, since: Date(), forwards: [wiki], updatedAt: Date())
    })
    let counter = CommitCounter()
    store.database.add(transactionObserver: counter, extent: .observerLifetime)
    return (store, counter)
}

private func probe(_ tunnel: String, ms: Double, ok: Bool = true) -> StoreWrite {
    .probe(tunnel: tunnel, [ForwardStatus(kind: .local, spec: wiki.spec, probe: .http, probeMs: ms, ok: ok)])
}

@Suite struct StoreWriterTests {
    @Test func aBatchCommitsInOneTransaction() throws {
        let names = (0..<60).map { String(format: "t%02d", $0) }
        let (store, commits) = try store(tunnels: names)
        let failed = store.apply(names.enumerated().map { probe($1, ms: Double($0)) })
        #expect(failed.isEmpty)
        #expect(commits.count == 1, "one probe round of 60 tunnels, one commit")
        let rows = try store.tunnels(named: names)
        #expect(names.enumerated().allSatisfy { rows[$1]?.probeMs == Double($0) && rows[$1]?.forwards.first?.ok == true })
    }

    @Test func aFailingWriteInABatchLosesNothingElse() throws {
        let (store, commits) = try store(tunnels: ["a", "b"])
        let failed = store.apply([
            probe("a", ms: 1),
            .state(tunnel: "ghost", .up, pid: 7, error: nil, message: "up"),
            .state(tunnel: "b", .up, pid: 7, error: nil, message: "all forwards pass"),
            probe("a", ms: 2, ok: false),
        ])
        #expect(failed.map(\.write) == [.state(tunnel: "ghost", .up, pid: 7, error: nil, message: "up")])
        #expect(failed.first?.error as? StoreError == .unknownTunnel("ghost"))
        #expect(commits.count == 1)
        #expect(try store.tunnel("a")?.probeMs == 2, "the writes after the failed one are applied in order")
        #expect(try store.tunnel("b")?.state == .up)
        #expect(try store.events().filter { $0.kind == .probe }.map(\.to) == ["failed"])
    }

    @Test func aBatchWhoseCommitFailsIsAppliedWriteByWrite() throws {
        let (store, commits) = try store(tunnels: ["a"])
        // A deferred foreign key is checked only at the commit: an event with this message makes that fail.
        try store.database.write { db in
            try db.execute(sql: """
                CREATE TABLE poison(tunnel TEXT REFERENCES tunnel(name) DEFERRABLE INITIALLY DEFERRED);
                CREATE TRIGGER poisoned AFTER INSERT ON event WHEN NEW.message = 'poison'
                BEGIN INSERT INTO poison VALUES ('nobody'); END;
                """)
        }
        let before = commits.count
        let failed = store.apply([probe("a", ms: 5), .log(.error, tunnel: nil, host: nil, message: "poison"),
                                  .log(.daemon, tunnel: nil, host: nil, message: "fine")])
        #expect(failed.map(\.write) == [.log(.error, tunnel: nil, host: nil, message: "poison")])
        #expect(commits.count - before == 2, "the batch rolled back; then each write on its own")
        #expect(try store.tunnel("a")?.probeMs == 5)
        #expect(try store.events().map(\.message).suffix(1) == ["fine"])
    }

    @Test func writesQueuedTogetherCommitOnceAndReachSubscribers() async throws {
        let names = ["a", "b", "c"]
        let (store, commits) = try store(tunnels: names)
        let writer = StoreWriter(store: store)
        let seen = Seen()
        writer.subscribe(.tunnels(Set(names))) { news in
            if case .tunnel(let row) = news { seen.add(row) }
            return true
        }
        await writer.flush()
        let before = commits.count
        writer.enqueue(contentsOf: names.map { probe($0, ms: 9) } + [.state(tunnel: "b", .up, pid: 1, error: nil, message: "up")])
        await writer.flush()
        #expect(commits.count - before == 1)
        let last = seen.last
        #expect(names.allSatisfy { last[$0]?.probeMs == 9 }, "every row is pushed after the commit")
        #expect(last["b"]?.state == .up)
    }
}

private final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private var rows: [String: TunnelStatus] = [:]
    func add(_ row: TunnelStatus) { lock.withLock { rows[row.name] = row } }
    var last: [String: TunnelStatus] { lock.withLock { rows } }
}
