import Foundation
import Testing
@testable import FwdCore

/// A clock the test moves by hand; whole seconds, so dates round-trip through the database exactly.
private final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var seconds: Double = 1_700_000_000

    var now: Date { lock.withLock { Date(timeIntervalSince1970: seconds) } }
    func advance(_ by: Double = 1) { lock.withLock { seconds += by } }
}

/// Runs `body` with a new empty directory that is removed afterwards, even when `body` throws.
private func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let dir = NSTemporaryDirectory() + "fwd-store-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

/// Runs `body(0..<count)` on `count` threads released together, and returns what they threw.
/// Real threads, not tasks: Store calls block, and the cooperative pool has only one thread per core.
private func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) -> [String] {
    let start = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    let lock = NSLock()
    nonisolated(unsafe) var errors: [String] = []
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            start.wait()
            do { try body(index) } catch { lock.withLock { errors.append("thread \(index): \(error)") } }
            done.leave()
        }
        thread.start()
    }
    for _ in 0..<count { start.signal() }
    done.wait()
    return lock.withLock { errors }
}

private struct Unexpected: Error { var message: String }

/// A tunnel's row as `setDesired(_:recorded:)` takes it.
/// One write as the supervisor's writer applies it; its error, if any, is thrown.
private func write(_ store: Store, _ write: StoreWrite) throws {
    if let failed = store.apply([write]).first { throw failed.error }
}

private func want(_ name: String, _ host: String, _ forwards: [ForwardStatus]) -> TunnelStatus {
    TunnelStatus(name: name, host: host, desired: .down, state: .down, since: Date(), forwards: forwards, updatedAt: Date())
}

private let wikiForward = ForwardStatus(kind: .local, spec: "127.0.0.1:8080:wiki.lan:80", probe: .http)
private let dbForward = ForwardStatus(kind: .remote, spec: "0:localhost:5432", probe: .tcp)

@Suite struct StoreTests {
    @Test func migrationsCreateTheSchema() throws {
        let store = try Store.inMemory()
        #expect(try store.appliedMigrations() == ["v1", "v2-retries", "v3-tally"])
        #expect(try store.tunnels().isEmpty)
        #expect(try store.events().isEmpty)
        #expect(try store.masters().isEmpty)
    }

    @Test func fileStoreIsPrivateWALAndReopens() throws {
        try withTemporaryDirectory { dir in
            let state = dir + "/state"
            let path = state + "/fwd.db"
            let first = try Store(path: path)
            try first.setDesired(.up, recorded: [want("wiki", "office", [wikiForward])])

            #expect(try first.journalMode() == "wal")
            #expect(FileSystem.mode(of: state) == 0o700)
            for file in [path, path + "-wal", path + "-shm", path + ".lock"] {
                #expect(FileSystem.mode(of: file) == 0o600, "\(file)")
            }

            // A second process opening while the first is open sees the same data; migrations are not rerun.
            let second = try Store(path: path)
            #expect(try second.appliedMigrations() == ["v1", "v2-retries", "v3-tally"])
            #expect(try second.tunnel("wiki")?.host == "office")
            try second.log(.daemon, tunnel: nil, host: nil, message: "started")
            #expect(try first.events().map(\.kind) == [.desired, .daemon])
        }
    }

    /// `fwd run` opens two Stores (its output and the supervisor's). Opening the second must keep the locks of
    /// the first: when they were dropped, another process closing its connection (here the sqlite3 shell)
    /// took itself for the last one, checkpointed and deleted the WAL, and every later commit went to the
    /// deleted file. `fwd run` lost its "desired down" at exit that way.
    @Test func aSecondStoreInOneProcessKeepsLaterWritesVisible() throws {
        let sqlite = "/usr/bin/sqlite3"
        try #require(FileManager.default.isExecutableFile(atPath: sqlite), "the sqlite3 shell is needed (.ci/run installs it)")
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            let first = try Store(path: path)
            try first.setDesired(.up, recorded: [want("wiki", "office", [wikiForward])])
            let second = try Store(path: path)
            let count = "SELECT count(*) FROM tunnel;"
            #expect(try ChildProcess.run([sqlite, path, count]).output.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            try second.setDesired(.up, recorded: [want("db", "office", [])])
            #expect(try ChildProcess.run([sqlite, path, count]).output.trimmingCharacters(in: .whitespacesAndNewlines) == "2")
            #expect(try first.tunnels().count == 2)
        }
    }

    @Test func existingLooseFileIsTightened() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]))
            let store = try Store(path: path)
            try store.log(.daemon, tunnel: nil, host: nil, message: "started")
            #expect(FileSystem.mode(of: path) == 0o600)
            #expect(FileSystem.mode(of: path + "-wal") == 0o600)
        }
    }

    /// The log keeps the newest events and drops the oldest as new ones arrive, so a supervisor that runs for
    /// months on a flapping link does not grow its database without bound.
    @Test func eventLogKeepsTheNewestAndStaysBounded() throws {
        let store = try Store.inMemory(eventRetention: 128)
        for i in 1...1000 { try store.log(.probe, tunnel: "t", host: "h", message: "event \(i)") }
        let kept = try store.events(limit: 10_000)
        #expect(kept.count >= 128 && kept.count <= 130, "\(kept.count)")
        #expect(kept.last?.message == "event 1000")
        #expect(zip(kept, kept.dropFirst()).allSatisfy { $1.id == $0.id + 1 }, "the newest ones, without gaps")
        #expect(try store.events(tunnel: "t", after: kept.last!.id).isEmpty)
    }

    /// A failed attempt counts as a restart and records the count and when the next try is; a probe records its
    /// time; getting up clears the count and the retry.
    @Test func retriesAreRecordedUntilTheTunnelIsUp() throws {
        let clock = TestClock()
        let store = try Store.inMemory(now: { clock.now })
        try store.setDesired(.up, recorded: [want("wiki", "office", [wikiForward])])
        try write(store, .state(tunnel: "wiki", .starting, pid: nil, error: "Connection refused", message: "attempt 1 failed"))
        try write(store, .retrying(tunnel: "wiki", attempts: 1, retryIn: 4))
        var row = try #require(try store.tunnel("wiki"))
        #expect(row.attempts == 1)
        #expect(row.restarts == 0, "the machine records the restart itself")
        #expect(abs((row.nextRetry?.timeIntervalSince(clock.now) ?? 0) - 4) < 0.001)
        #expect(row.lastProbe == nil)
        // The next attempt runs: the state stays starting and the retry time with it.
        try write(store, .state(tunnel: "wiki", .starting, pid: 9, error: "Connection refused", message: "connecting"))
        #expect(try store.tunnel("wiki")?.nextRetry != nil)
        clock.advance()
        try write(store, .state(tunnel: "wiki", .up, pid: 9, error: nil, message: "up"))
        try write(store, .probe(tunnel: "wiki", [wikiForward]))
        row = try #require(try store.tunnel("wiki"))
        #expect(row.attempts == 0)
        #expect(row.nextRetry == nil)
        #expect(row.lastProbe == clock.now)
    }

    @Test func transitionLogsOneEventPerRealChange() throws {
        let clock = TestClock()
        let store = try Store.inMemory(now: { clock.now })
        try store.setDesired(.up, recorded: [want("wiki", "office", [wikiForward])])
        let created = clock.now

        clock.advance()
        #expect(try store.transition("wiki", to: .starting, pid: nil, error: nil, message: "connecting"))
        let started = clock.now
        #expect(try store.tunnel("wiki")?.since == started)

        clock.advance()
        #expect(try store.transition("wiki", to: .starting, pid: 4242, error: "slow", message: "still connecting") == false)
        var wiki = try #require(try store.tunnel("wiki"))
        #expect(wiki.state == .starting)
        #expect(wiki.since == started)
        #expect(wiki.pid == 4242)
        #expect(wiki.lastError == "slow")
        #expect(wiki.updatedAt == clock.now)

        clock.advance()
        #expect(try store.transition("wiki", to: .up, pid: 4242, error: nil, message: "probe ok"))
        wiki = try #require(try store.tunnel("wiki"))
        #expect(wiki.state == .up)
        #expect(wiki.since == clock.now)
        #expect(wiki.lastError == nil)

        let events = try store.events(tunnel: "wiki")
        #expect(events.map(\.kind) == [.desired, .state, .state])
        #expect(events[1].from == "down" && events[1].to == "starting" && events[1].message == "connecting")
        #expect(events[2].from == "starting" && events[2].to == "up" && events[2].host == "office")
        #expect(events[0].time == created)
        #expect(events[2].time == clock.now)
    }

    @Test func restartsCount() throws {
        let store = try Store.inMemory()
        try store.setDesired(.up, recorded: [want("wiki", "office", [])])
        try write(store, .restart(tunnel: "wiki", reason: "master exited: Connection reset"))
        try write(store, .restart(tunnel: "wiki", reason: "probe failed 3 times"))
        #expect(try store.tunnel("wiki")?.restarts == 2)
        let restarts = try store.events(tunnel: "wiki").filter { $0.kind == .restart }
        #expect(restarts.map(\.message) == ["master exited: Connection reset", "probe failed 3 times"])
    }

    @Test func eventsComeInOrderFilteredByTunnelAndCursor() throws {
        let store = try Store.inMemory()
        try store.setDesired(.up, recorded: [want("a", "h1", []), want("b", "h2", [])])
        for state in [TunnelState.starting, .up, .degraded] {
            try store.transition("a", to: state, pid: 1, error: nil, message: "a \(state)")
            try store.transition("b", to: state, pid: 2, error: nil, message: "b \(state)")
        }
        try store.log(.master, tunnel: nil, host: "h1", message: "master started")

        let all = try store.events()
        #expect(all.count == 9)
        #expect(all.map(\.id) == all.map(\.id).sorted())
        #expect(Set(all.map(\.id)).count == all.count)
        #expect(all.last?.tunnel == nil && all.last?.host == "h1")

        let a = try store.events(tunnel: "a")
        #expect(a.map(\.message) == ["wanted up", "a starting", "a up", "a degraded"])

        let afterSecondOfA = try store.events(tunnel: "a", after: a[1].id)
        #expect(afterSecondOfA.map(\.message) == ["a up", "a degraded"])
        #expect(try store.events(after: all[6].id).map(\.id) == [all[7].id, all[8].id])
        #expect(try store.events(limit: 2).map(\.id) == [all[0].id, all[1].id])
    }

    @Test func setDesiredCreatesDownRowsAndUpdatesExistingOnes() throws {
        let store = try Store.inMemory()
        try store.setDesired(.up, recorded: [want("wiki", "office", [wikiForward]),
                                            want("db", "prod", [dbForward])])
        try store.setDesired(.down, recorded: [want("mail", "office", [])])

        let tunnels = try store.tunnels()
        #expect(tunnels.map(\.name) == ["db", "mail", "wiki"])
        #expect(tunnels.allSatisfy { $0.state == .down && $0.restarts == 0 && $0.pid == nil })
        #expect(try store.tunnel("wiki")?.forwards == [wikiForward])
        #expect(try store.desiredUp().map(\.name) == ["db", "wiki"])

        let desired = try store.events().filter { $0.kind == .desired }
        #expect(desired.map(\.tunnel) == ["wiki", "db", "mail"])
        #expect(desired[0].from == nil && desired[0].to == "up")

        // Taking a running tunnel down records the wish; the state is the supervisor's to change.
        try store.transition("wiki", to: .up, pid: 7, error: nil, message: "up")
        try write(store, .probe(tunnel: "wiki", [ForwardStatus(kind: .local, spec: wikiForward.spec, probe: .http, probeMs: 3, ok: true)]))
        try store.setDesired(.down, recorded: [want("wiki", "office2", [wikiForward])])
        let wiki = try #require(try store.tunnel("wiki"))
        #expect(wiki.desired == .down && wiki.state == .up && wiki.host == "office2")
        #expect(wiki.forwards.first?.ok == true, "the last probe result of a forward still configured is kept")
        #expect(try store.desiredUp().map(\.name) == ["db"])
        let last = try #require(try store.events(tunnel: "wiki").last)
        #expect(last.kind == .desired && last.from == "up" && last.to == "down")
    }

    @Test func probesLogOnlyFlips() throws {
        let store = try Store.inMemory()
        try store.setDesired(.up, recorded: [want("app", "office", [wikiForward, dbForward])])
        try write(store, .allocatedPort(tunnel: "app", spec: dbForward.spec, port: 41234))

        func probe(_ wikiOk: Bool, _ dbOk: Bool) throws {
            try write(store, .probe(tunnel: "app", [
                ForwardStatus(kind: .local, spec: wikiForward.spec, probe: .http, probeMs: 12.5, ok: wikiOk),
                ForwardStatus(kind: .remote, spec: dbForward.spec, probe: .tcp, probeMs: 30, ok: dbOk),
            ]))
        }
        func probeEvents() throws -> [Event] { try store.events(tunnel: "app").filter { $0.kind == .probe } }

        try probe(true, true)
        #expect(try probeEvents().isEmpty, "a first success is not news")
        let app = try #require(try store.tunnel("app"))
        #expect(app.probeMs == 30)
        #expect(app.forwards[1].allocatedPort == 41234, "a probe report without the port keeps it")
        #expect(app.forwards.map(\.ok) == [true, true])

        try probe(true, false)
        try probe(true, false)
        try probe(true, true)
        let events = try probeEvents()
        #expect(events.map(\.to) == ["failed", "ok"])
        #expect(events.map(\.from) == ["ok", "failed"])
        #expect(events[0].message.contains(dbForward.spec))
    }

    @Test func unknownTunnelsAndForwardsAreErrors() throws {
        let store = try Store.inMemory()
        #expect(throws: StoreError.unknownTunnel("ghost")) {
            try store.transition("ghost", to: .up, pid: nil, error: nil, message: "")
        }
        #expect(throws: StoreError.unknownTunnel("ghost")) { try write(store, .restart(tunnel: "ghost", reason: "")) }
        try store.setDesired(.up, recorded: [want("wiki", "office", [wikiForward])])
        #expect(throws: StoreError.unknownForward(tunnel: "wiki", spec: "9:x:9")) {
            try write(store, .allocatedPort(tunnel: "wiki", spec: "9:x:9", port: 1))
        }
        #expect(try store.events().count == 1, "failed calls write nothing")
    }

    @Test func removeForgetsTheTunnelButKeepsItsEvents() throws {
        let store = try Store.inMemory()
        try store.setDesired(.up, recorded: [want("old", "office", [])])
        try store.transition("old", to: .failed, pid: nil, error: "boom", message: "failed")
        try store.remove("old")
        #expect(try store.tunnel("old") == nil)
        #expect(try store.desiredUp().isEmpty)
        #expect(try store.events(tunnel: "old").count == 2)
    }

    @Test func mastersRoundTrip() throws {
        let store = try Store.inMemory()
        let office = MasterRecord(host: "office", pid: 1234, startTime: UInt64.max, socket: "/tmp/fwd-1000/office",
                                  startedAt: Date(timeIntervalSince1970: 1_700_000_000))
        let prod = MasterRecord(host: "prod", pid: 99, startTime: 123_456, socket: "/tmp/fwd-1000/prod",
                                startedAt: Date(timeIntervalSince1970: 1_700_000_500))
        try store.saveMaster(prod)
        try store.saveMaster(office)
        #expect(try store.masters() == [office, prod])

        var restarted = office
        restarted.pid = 5678
        restarted.startTime = 42
        try store.saveMaster(restarted)
        #expect(try store.masters() == [restarted, prod])

        try store.removeMaster(host: "office")
        #expect(try store.masters() == [prod])
    }

    /// Each Store has its own connections, so writers on separate Stores contend for the file's locks the
    /// way separate processes do.
    @Test func concurrentWritersLoseNothingAndNeverSeeBusy() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            let writers = 8, transitions = 200, desiredEvery = 10
            let setup = try Store(path: path)
            try setup.setDesired(.up, recorded: [want("shared", "office", [])]
                + (0..<writers).map { want("w\($0)", "office", [wikiForward]) })
            let initialEvents = try setup.events().count

            let lock = NSLock()
            nonisolated(unsafe) var sharedChanges = 0
            nonisolated(unsafe) var writersDone = 0
            nonisolated(unsafe) var followed: [Int64] = []

            // The first `writers` threads write; the last follows the log like `fwd logs -f`.
            let errors = onThreads(writers + 1) { index in
                let store = try Store(path: path)
                if index == writers {
                    var last: Int64 = 0
                    while true {
                        let finished = lock.withLock { writersDone == writers }
                        let batch = try store.events(after: last, limit: 500)
                        followed += batch.map(\.id)
                        last = batch.last?.id ?? last
                        _ = try store.tunnels()
                        if finished && batch.isEmpty { return }
                    }
                }
                defer { lock.withLock { writersDone += 1 } }
                let name = "w\(index)"
                var changes = 0
                for i in 0..<transitions {
                    guard try store.transition(name, to: i.isMultiple(of: 2) ? .up : .down, pid: i, error: nil, message: "\(i)") else {
                        throw Unexpected(message: "\(name) did not change state at \(i)")
                    }
                    if try store.transition("shared", to: TunnelState.allCases.randomElement()!, pid: index, error: nil, message: name) {
                        changes += 1
                    }
                    if i % desiredEvery == 0 {
                        try store.setDesired(i % 20 == 0 ? .down : .up, recorded: [want(name, "office", [wikiForward])])
                    }
                }
                lock.withLock { sharedChanges += changes }
            }
            #expect(errors.isEmpty, "\(errors)")

            let store = try Store(path: path)
            let desiredPerWriter = transitions / desiredEvery
            for index in 0..<writers {
                let events = try store.events(tunnel: "w\(index)", limit: 10_000)
                #expect(events.filter { $0.kind == .state }.count == transitions)
                #expect(events.filter { $0.kind == .desired }.count == 1 + desiredPerWriter)
            }
            let shared = try store.events(tunnel: "shared", limit: 10_000).filter { $0.kind == .state }
            #expect(shared.count == sharedChanges, "one event per transition that reported a change")
            for (before, after) in zip(shared, shared.dropFirst()) {
                #expect(before.to == after.from, "each change starts where the previous one ended")
            }

            let total = initialEvents + writers * (transitions + desiredPerWriter) + sharedChanges
            let all = try store.events(limit: 100_000)
            #expect(all.count == total)
            #expect(followed == all.map(\.id), "a follower sees every event once, in order")
        }
    }

    @Test func manyProcessesOpeningAFreshDatabaseAtOnce() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/state/fwd.db"
            let errors = onThreads(10) { index in
                let store = try Store(path: path)
                try store.log(.daemon, tunnel: nil, host: nil, message: "opened \(index)")
            }
            #expect(errors.isEmpty, "\(errors)")
            let store = try Store(path: path)
            #expect(try store.appliedMigrations() == ["v1", "v2-retries", "v3-tally"])
            #expect(try store.events().count == 10)
        }
    }

    // MARK: Databases fwd cannot use (docs/reliability.md, "State database")

    @Test func aFileThatIsNotADatabaseIsDamagedAndNamed() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            try FileSystem.writeAtomically(String(repeating: "garbage ", count: 1000), to: path)
            #expect(throws: StoreError.damaged(path: path, detail: "file is not a database")) { try Store(path: path) }
            #expect(Store.diagnose(path: path) == .damaged(path: path, detail: "file is not a database"))
            let error = StoreError.damaged(path: path, detail: "file is not a database")
            #expect(error.isUnusableDatabase)
            #expect(error.description.contains("mv \(path) \(path).bad"))
            #expect(FileSystem.read(path)?.hasPrefix("garbage") == true, "the file is left as it was")
        }
    }

    @Test func aNewerSchemaIsRefusedWithBothVersions() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            let store = try Store(path: path)
            try store.database.write { try $0.execute(sql: "INSERT INTO grdb_migrations VALUES ('v7-later'), ('unnumbered')") }
            #expect(throws: StoreError.newerSchema(path: path, found: 7, known: 3)) { try Store(path: path) }
            #expect(Store.diagnose(path: path) == .newerSchema(path: path, found: 7, known: 3))
            #expect(StoreSchema.version == 3)
        }
    }

    @Test func aHealthyDatabaseDiagnosesClean() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/fwd.db"
            #expect(Store.diagnose(path: path) == nil, "no file yet")
            _ = try Store(path: path)
            #expect(Store.diagnose(path: path) == nil)
        }
    }
}
