import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package enum TunnelState: String, Sendable, Codable, CaseIterable {
    case starting, up, degraded, down, failed
    /// The host's master dropped and logging in again needs a person (a password, a passphrase, a code): fwd makes
    /// no login attempt until `fwd up` runs on a terminal.
    case needsAuth = "needs-auth"
}

/// What an event records.
package enum EventKind: String, Sendable, Codable, CaseIterable {
    /// The desired state changed (from/to: up, down).
    case desired
    /// The observed state changed (from/to: a `TunnelState`).
    case state
    case restart
    /// A forward's probe result flipped (from/to: ok, failed).
    case probe
    case master
    /// A master checked or restarted because the network changed, the machine woke, or `fwd reconnect` asked.
    case network
    case daemon
    case error
    /// An `on_change` hook ran: how it ended, and its stderr.
    case hook
}
package enum DesiredState: String, Sendable, Codable { case up, down }

package struct ForwardStatus: Sendable, Codable, Equatable {
    package var kind: ForwardKind
    /// The ssh argument, e.g. "127.0.0.1:8080:wiki.lan:80".
    package var spec: String
    /// For `-R 0:…`, the port the server picked.
    package var allocatedPort: Int?
    package var probe: ProbeKind
    /// Latency of the last probe.
    package var probeMs: Double?
    /// Result of the last probe; nil until probed.
    package var ok: Bool?
    /// The port range this forward belongs to, as written ("60000-60009:ftp.lan:60000-60009"); nil for a
    /// forward written on its own. Rows written before ranges existed decode with nil.
    package var range: String?
    /// For a public forward (`public = true`), where its last probe reached the listener beyond loopback
    /// (`host:port`, on this machine for -L/-D, on the server for -R); empty: nowhere; nil: not shared, or not
    /// known yet. Rows written before sharing was checked decode with nil.
    package var shared: [String]?

    package init(kind: ForwardKind, spec: String, allocatedPort: Int? = nil, probe: ProbeKind, probeMs: Double? = nil, ok: Bool? = nil,
                 range: String? = nil, shared: [String]? = nil) {
        self.kind = kind
        self.spec = spec
        self.allocatedPort = allocatedPort
        self.probe = probe
        self.probeMs = probeMs
        self.ok = ok
        self.range = range
        self.shared = shared
    }
}

extension ForwardStatus {
    /// A tunnel's forwards as recorded before anything is known about them: spec, probe kind and range only.
    package static func initial(for tunnel: Tunnel) -> [ForwardStatus] {
        tunnel.forwards.map { ForwardStatus(kind: $0.kind, spec: $0.sshArgument, probe: tunnel.probe(for: $0),
                                            range: tunnel.range(containing: $0)?.text) }
    }
}

package struct TunnelStatus: Sendable, Codable, Equatable {
    package var name: String
    package var host: String
    package var desired: DesiredState
    package var state: TunnelState
    /// Pid of the host's ControlMaster.
    package var pid: Int?
    /// When `state` last changed; for up and degraded, when the tunnel connected (a flip between the two
    /// keeps it, so the uptime is the connection's).
    package var since: Date
    package var restarts: Int
    /// Latest probe latency of the tunnel: the maximum over its forwards.
    package var probeMs: Double?
    package var lastError: String?
    package var forwards: [ForwardStatus]
    package var updatedAt: Date
    /// Failed attempts in a row (connecting, or adding a forward the server or a local program refuses) since the
    /// tunnel was last up; 0 once it is up.
    package var attempts: Int
    /// When fwd tries again after the last failed attempt (in the past once that try is under way); nil when no
    /// retry is scheduled.
    package var nextRetry: Date?
    /// When a probe result was last recorded.
    package var lastProbe: Date?

    package init(name: String, host: String, desired: DesiredState, state: TunnelState, pid: Int? = nil, since: Date,
                restarts: Int = 0, probeMs: Double? = nil, lastError: String? = nil, forwards: [ForwardStatus], updatedAt: Date,
                attempts: Int = 0, nextRetry: Date? = nil, lastProbe: Date? = nil) {
        self.attempts = attempts
        self.nextRetry = nextRetry
        self.lastProbe = lastProbe
        self.name = name
        self.host = host
        self.desired = desired
        self.state = state
        self.pid = pid
        self.since = since
        self.restarts = restarts
        self.probeMs = probeMs
        self.lastError = lastError
        self.forwards = forwards
        self.updatedAt = updatedAt
    }
}

package struct Event: Sendable, Codable, Equatable {
    package var id: Int64
    package var time: Date
    /// nil for host- and daemon-level events.
    package var tunnel: String?
    package var host: String?
    package var kind: EventKind
    /// Previous value: the state for "state" events, the desired state for "desired", "ok"/"failed" for "probe".
    package var from: String?
    package var to: String?
    package var message: String

    package init(id: Int64, time: Date, tunnel: String?, host: String?, kind: EventKind, from: String?, to: String?, message: String) {
        self.id = id
        self.time = time
        self.tunnel = tunnel
        self.host = host
        self.kind = kind
        self.from = from
        self.to = to
        self.message = message
    }
}

package struct MasterRecord: Sendable, Codable, Equatable {
    package var host: String
    package var pid: Int
    /// Process start time (/proc/PID/stat field 22), to tell a reused pid apart.
    package var startTime: UInt64
    package var socket: String
    package var startedAt: Date

    package init(host: String, pid: Int, startTime: UInt64, socket: String, startedAt: Date) {
        self.host = host
        self.pid = pid
        self.startTime = startTime
        self.socket = socket
        self.startedAt = startedAt
    }
}

package enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The supervisor reported on a tunnel that has no row (never brought up, or removed meanwhile).
    case unknownTunnel(String)
    case unknownForward(tunnel: String, spec: String)
    /// A row this version of fwd cannot read, e.g. written by a newer fwd.
    case unreadable(table: String, key: String)
    /// The file at `path` is not an SQLite database, or a damaged one; `detail` is SQLite's word for it.
    case damaged(path: String, detail: String)
    /// The database at `path` has migrations this fwd does not know: a newer fwd wrote it.
    case newerSchema(path: String, found: Int, known: Int)

    /// Whether the database as a whole cannot be used (rather than one request failing): commands that need
    /// rows stop with `description`; `fwd down --all` and `fwd doctor` carry on without them.
    package var isUnusableDatabase: Bool {
        switch self {
        case .damaged, .newerSchema: return true
        case .unknownTunnel, .unknownForward, .unreadable: return false
        }
    }

    /// What is wrong, without the advice.
    package var problem: String {
        switch self {
        case .damaged(let path, let detail):
            return "the state database \(path) cannot be read: it is not an SQLite database, or a damaged one (\(detail))"
        case .newerSchema(let path, let found, let known):
            return "the state database \(path) was written by a newer fwd (schema \(found) > \(known), the newest this fwd knows)"
        default:
            return description
        }
    }

    /// How to get going again. The database holds only what fwd recorded (wanted and observed states, events);
    /// the tunnels live in fwd.toml, so moving the file aside loses no configuration (docs/reliability.md,
    /// "State database").
    package var advice: String? {
        switch self {
        case .damaged(let path, _):
            return "the tunnels are configured in fwd.toml, which this does not touch: move the database aside and fwd starts a new one with `fwd down --all; \(Self.moveAside(path))`, then `fwd up NAME…`"
        case .newerSchema(let path, _, _):
            return "upgrade fwd to the version that wrote it, or move the database aside (fwd.toml stays as it is; the recorded states and events stay in the moved file): `fwd down --all; \(Self.moveAside(path))`, then `fwd up NAME…`"
        default:
            return nil
        }
    }

    /// The shell command that moves the database and the WAL files SQLite keeps beside it out of the way, so a
    /// new database does not pick up the old one's write-ahead log.
    static func moveAside(_ path: String) -> String {
        let bad = path + ".bad"
        var moves = ["mv \(SSHCommand.shellQuote(path)) \(SSHCommand.shellQuote(bad))"]
        for suffix in ["-wal", "-shm"] where FileSystem.exists(path + suffix) {
            moves.append("mv \(SSHCommand.shellQuote(path + suffix)) \(SSHCommand.shellQuote(bad + suffix))")
        }
        return moves.joined(separator: " && ")
    }

    /// SQLite's "not a database" and "malformed" as `damaged`; anything else unchanged.
    static func translating(_ error: any Error, path: String) -> any Error {
        guard let error = error as? DatabaseError, error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT else { return error }
        return StoreError.damaged(path: path, detail: error.message ?? "\(error.resultCode)")
    }

    package var description: String {
        if isUnusableDatabase, let advice { return "\(problem); \(advice)" }
        switch self {
        case .unknownTunnel(let name):
            return "no recorded state for tunnel \"\(Validation.printable(name))\"; run `fwd up \(Validation.printable(name))` to start it"
        case .unknownForward(let tunnel, let spec):
            return "tunnel \"\(Validation.printable(tunnel))\" has no forward \(Validation.printable(spec)); `fwd status` lists its forwards"
        case .unreadable(let table, let key):
            return "cannot read the \(table) row \"\(Validation.printable(key))\" in the state database; was it written by a newer fwd? Upgrade fwd, or run `fwd down` and remove the database"
        case .damaged, .newerSchema:
            return problem
        }
    }
}

/// The state database: the supervisor writes observed state, CLI processes read it and write desired
/// state, all at once. The only code that opens the database.
package final class Store: Sendable {
    let database: any DatabaseWriter
    /// The tallies as committed, so a probe round's samples cost one INSERT each rather than a SELECT and a
    /// JSON round trip too (idle CPU). Cleared whenever a write fails, so it is never ahead of the file.
    private let committedTallies = Locked([TallyKey: Tally]())
    /// The file, for messages; nil in memory.
    let path: String?
    private let now: @Sendable () -> Date
    /// How many of the newest events the log keeps; older ones are pruned as new ones arrive.
    let eventRetention: Int64

    /// A supervisor writes a few events per state change and per reconnect: 50 000 are weeks of a flapping
    /// link and a few MB, where an unpruned log would grow for as long as fwd runs.
    package static let defaultEventRetention: Int64 = 50_000

    private init(database: any DatabaseWriter, path: String?, now: @escaping @Sendable () -> Date, eventRetention: Int64) {
        self.database = database
        self.path = path
        self.now = now
        self.eventRetention = max(1, eventRetention)
    }

    /// Opens (creating and migrating if needed) the database at `path`, with the file and its -wal/-shm at
    /// mode 0600 and its directory at 0700.
    package convenience init(path: String, now: @escaping @Sendable () -> Date = { Date() }) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileSystem.makePrivateDirectory(directory) }
        // Two processes opening a fresh database at once fail in the WAL switch or the migrator without this
        // (docs/architecture.md, "SQLite"); flock, unlike fcntl locks, also excludes other opens within this process.
        let pool = try Self.holdingLock(path + ".lock") {
            try Self.createPrivateFile(path)
            var configuration = Configuration()
            // The default fails at once with SQLITE_BUSY when another process writes (13 % of writes, measured).
            configuration.busyMode = .timeout(5)
            configuration.label = "fwd.db"
            let pool: DatabasePool
            do {
                pool = try DatabasePool(path: path, configuration: configuration)
                // A newer fwd's database is refused rather than used: its rows may mean what this fwd cannot know.
                if let found = try pool.read({ try StoreSchema.newerVersion(in: $0) }) {
                    throw StoreError.newerSchema(path: path, found: found, known: StoreSchema.version)
                }
                try StoreSchema.migrator.migrate(pool)
            } catch {
                throw StoreError.translating(error, path: path)
            }
            // SQLite gives -wal/-shm the main file's mode; enforce it anyway for files left by older runs.
            for file in [path + "-wal", path + "-shm"] where FileSystem.exists(file) {
                if chmod(file, 0o600) != 0 { throw FileSystemError.failed(path: file, action: "set mode 0600 on", errno: errno) }
            }
            return pool
        }
        self.init(database: pool, path: path, now: now, eventRetention: Store.defaultEventRetention)
    }

    /// For shell completion: each tunnel's observed state, read without creating, migrating or locking anything
    /// and without waiting on a writer. nil when there is no database yet or it cannot be read at once.
    package static func peekStates(path: String) -> [String: TunnelState]? {
        guard let store = readOnly(path: path),
              let rows = try? store.database.read({ try Row.fetchAll($0, sql: "SELECT name, state FROM tunnel") }) else { return nil }
        var states: [String: TunnelState] = [:]
        for row in rows {
            if let name: String = row["name"], let raw: String = row["state"], let state = TunnelState(rawValue: raw) {
                states[name] = state
            }
        }
        return states
    }

    /// The database at `path` opened read-only, without creating, migrating, locking or waiting on a writer
    /// (completion, `fwd doctor`): nil when it does not exist or cannot be opened at once.
    package static func readOnly(path: String) -> Store? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .immediateError
        guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return nil }
        return Store(database: queue, path: path, now: { Date() }, eventRetention: defaultEventRetention)
    }

    /// Why the database at `path` cannot be used, found without creating, migrating, locking or waiting on a
    /// writer (`fwd doctor`): a damaged file, or a newer fwd's schema. nil when it reads, or does not exist.
    package static func diagnose(path: String) -> StoreError? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .immediateError
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            return try queue.read { db -> StoreError? in
                if let found = try StoreSchema.newerVersion(in: db) {
                    return .newerSchema(path: path, found: found, known: StoreSchema.version)
                }
                // The first problem only, and no page twice: the database is small, and this reads each page once.
                let check = try String.fetchOne(db, sql: "PRAGMA quick_check(1)") ?? "ok"
                return check == "ok" ? nil : .damaged(path: path, detail: check)
            }
        } catch {
            return StoreError.translating(error, path: path) as? StoreError
        }
    }

    /// A private in-memory database, for tests.
    package static func inMemory(now: @escaping @Sendable () -> Date = { Date() },
                                eventRetention: Int64 = Store.defaultEventRetention) throws -> Store {
        let queue = try DatabaseQueue()
        try StoreSchema.migrator.migrate(queue)
        return Store(database: queue, path: nil, now: now, eventRetention: eventRetention)
    }

    // MARK: Desired state (CLI)

    /// Records the desired state of each tunnel, creating it as `.down` if new, with one "desired" event each.
    /// Forwards come from the config; what was observed of a forward that is still configured is kept.
    package func setDesired(_ desired: DesiredState, tunnels: [Tunnel]) throws {
        try setDesired(desired, tunnels.map { ($0.name, $0.host, ForwardStatus.initial(for: $0)) })
    }

    /// The same for tunnels known only by their rows (`fwd down --all`, which needs no config).
    package func setDesired(_ desired: DesiredState, recorded: [TunnelStatus]) throws {
        try setDesired(desired, recorded.map { ($0.name, $0.host, $0.forwards) })
    }

    private func setDesired(_ desired: DesiredState, _ tunnels: [(name: String, host: String, forwards: [ForwardStatus])]) throws {
        let time = now().timeIntervalSince1970
        try writing { db in
            for tunnel in tunnels {
                let previous: String?
                if var row = try TunnelRow.fetchOne(db, key: tunnel.name) {
                    previous = row.desired
                    row.desired = desired.rawValue
                    row.host = tunnel.host
                    row.forwards = try TunnelRow.encode(Self.merge(tunnel.forwards, keepingFrom: try row.decodedForwards(), all: true))
                    row.updatedAt = time
                    try row.update(db)
                } else {
                    previous = nil
                    try TunnelRow(name: tunnel.name, host: tunnel.host, desired: desired.rawValue, state: TunnelState.down.rawValue,
                                  pid: nil, since: time, restarts: 0, probeMs: nil, lastError: nil,
                                  forwards: try TunnelRow.encode(tunnel.forwards), updatedAt: time,
                                  attempts: 0, nextRetry: nil, lastProbe: nil).insert(db)
                }
                try append(db, time: time, kind: .desired, tunnel: tunnel.name, host: tunnel.host,
                           from: previous, to: desired.rawValue, message: "wanted \(desired.rawValue)")
            }
        }
    }

    package func desiredUp() throws -> [TunnelStatus] {
        try reading { db in
            try TunnelRow.filter(Column("desired") == DesiredState.up.rawValue).order(Column("name")).fetchAll(db).map { try $0.status() }
        }
    }

    // MARK: Observed state (supervisor)

    /// Sets the tunnel's state, master pid and last error. A change of state also moves `since` and appends a
    /// "state" event, in the same transaction. Returns whether the state changed.
    @discardableResult
    package func transition(_ tunnel: String, to state: TunnelState, pid: Int?, error: String?, message: String) throws -> Bool {
        let time = now().timeIntervalSince1970
        return try writing { db in try transition(db, time: time, tunnel, to: state, pid: pid, error: error, message: message) }
    }

    /// Appends a free-form event.
    package func log(_ kind: EventKind, tunnel: String?, host: String?, message: String) throws {
        let time = now().timeIntervalSince1970
        try writing { db in
            try append(db, time: time, kind: kind, tunnel: tunnel, host: host, from: nil, to: nil, message: message)
        }
    }

    /// Applies the supervisor's `writes` in order in one transaction: one commit (one sync of the WAL) for a
    /// whole probe round instead of one per tunnel. Each write runs in a savepoint of its own, so one that fails
    /// is undone alone and the others still commit. Should the transaction itself fail (at its commit, say),
    /// nothing of it is kept and each write is applied again in a transaction of its own. Returns the writes
    /// that failed, with why.
    func apply(_ writes: [StoreWrite]) -> [(write: StoreWrite, error: any Error)] {
        guard writes.count > 1 else {
            return writes.compactMap { write in
                do { try writing { db in try apply(write, db) } } catch {
                    committedTallies.withLock { $0 = [:] }
                    return (write, error)
                }
                return nil
            }
        }
        var failed: [(write: StoreWrite, error: any Error)] = []
        do {
            try writing { db in
                for write in writes {
                    do {
                        try db.inSavepoint {
                            try apply(write, db)
                            return .commit
                        }
                    } catch {
                        committedTallies.withLock { $0 = [:] }
                        failed.append((write, error))
                    }
                }
            }
            return failed
        } catch {
            committedTallies.withLock { $0 = [:] }
            return writes.flatMap { apply([$0]) }
        }
    }

    private func apply(_ write: StoreWrite, _ db: Database) throws {
        let time = now().timeIntervalSince1970
        switch write {
        case .state(let tunnel, let state, let pid, let error, let message):
            try transition(db, time: time, tunnel, to: state, pid: pid, error: error, message: message)
        case .restart(let tunnel, let reason):
            try recordRestart(db, time: time, tunnel, reason: reason)
        case .retrying(let tunnel, let attempts, let retryIn):
            try recordAttempt(db, time: time, tunnel, attempts: attempts, retryIn: retryIn)
        case .probe(let tunnel, let forwards):
            try recordProbe(db, time: time, tunnel, forwards: forwards)
        case .allocatedPort(let tunnel, let spec, let port):
            try setAllocatedPort(db, time: time, tunnel, spec: spec, port: port)
        case .saveMaster(let record):
            try MasterRow(record).save(db)
        case .removeMaster(let host):
            try MasterRow.deleteOne(db, key: host)
        case .log(let kind, let tunnel, let host, let message):
            try append(db, time: time, kind: kind, tunnel: tunnel, host: host, from: nil, to: nil, message: message)
        case .tally(let key, let samples):
            try addTally(db, key, samples)
        }
    }

    private func addTally(_ db: Database, _ key: TallyKey, _ samples: [Double]) throws {
        var tally = Tally()
        if let known = committedTallies.withLock({ $0[key] }) {
            tally = known
        } else {
            let select = try db.cachedStatement(sql: "SELECT count, sum, buckets FROM tally WHERE metric = ? AND subject = ?")
            if let row = try Row.fetchOne(select, arguments: [key.metric.rawValue, key.subject]) {
                tally = Tally(count: row["count"], sum: row["sum"], buckets: (try? JSONDecoder().decode([Int].self, from: Data((row["buckets"] as String).utf8))) ?? [])
            }
        }
        tally.add(samples, bounds: key.metric.bounds)
        let save = try db.cachedStatement(sql: "INSERT OR REPLACE INTO tally (metric, subject, count, sum, buckets) VALUES (?, ?, ?, ?, ?)")
        // The same JSON array JSONEncoder writes, without its cost.
        try save.execute(arguments: [key.metric.rawValue, key.subject, tally.count, tally.sum,
                                     "[" + tally.buckets.map(String.init).joined(separator: ",") + "]"])
        committedTallies.withLock { $0[key] = tally }
    }

    /// Every counter and histogram of the metrics, as committed.
    package func tallies() throws -> [TallyKey: Tally] {
        try reading { db in
            var result: [TallyKey: Tally] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT metric, subject, count, sum, buckets FROM tally") {
                guard let metric = TallyMetric(rawValue: row["metric"]) else { continue }  // a newer fwd's
                let buckets = (try? JSONDecoder().decode([Int].self, from: Data((row["buckets"] as String).utf8))) ?? []
                result[TallyKey(metric, row["subject"])] = Tally(count: row["count"], sum: row["sum"],
                                                                 buckets: buckets.count == metric.bounds.count ? buckets : [])
            }
            return result
        }
    }

    @discardableResult
    private func transition(_ db: Database, time: Double, _ tunnel: String, to state: TunnelState, pid: Int?, error: String?,
                            message: String) throws -> Bool {
        var row = try existing(db, tunnel)
        let previous = row.state
        let changed = previous != state.rawValue
        row.pid = pid
        row.lastError = error
        row.updatedAt = time
        // Only a tunnel still on its way up has a retry due; one that got there starts its count over.
        if state != .starting { row.nextRetry = nil }
        if [.up, .degraded, .down].contains(state) { row.attempts = 0 }
        if changed {
            // Between up and degraded the connection stays: `since` (the uptime) keeps counting from the connect.
            let connected: Set<String> = [TunnelState.up.rawValue, TunnelState.degraded.rawValue]
            if !(connected.contains(previous) && connected.contains(state.rawValue)) { row.since = time }
            row.state = state.rawValue
            try append(db, time: time, kind: .state, tunnel: tunnel, host: row.host, from: previous, to: state.rawValue, message: message)
        }
        try row.update(db)
        return changed
    }

    private func recordRestart(_ db: Database, time: Double, _ tunnel: String, reason: String) throws {
        var row = try existing(db, tunnel)
        row.restarts += 1
        row.updatedAt = time
        try row.update(db)
        try append(db, time: time, kind: .restart, tunnel: tunnel, host: row.host, from: nil, to: nil, message: reason)
    }

    /// The failed attempts in a row and when the next try is due (the machine records each attempt's restart).
    private func recordAttempt(_ db: Database, time: Double, _ tunnel: String, attempts: Int, retryIn: Double?) throws {
        var row = try existing(db, tunnel)
        row.attempts = attempts
        row.nextRetry = retryIn.map { time + $0 }
        row.updatedAt = time
        try row.update(db)
    }

    /// Stores the latest probe results. Probing is frequent, so only a forward whose result flips gets a
    /// "probe" event; a first success is not news (the "state" event to up says it). The supervisor's most
    /// frequent write (each tunnel, each probe round): it reads and sets only the columns it needs, through
    /// statements compiled once per connection.
    private func recordProbe(_ db: Database, time: Double, _ tunnel: String, forwards: [ForwardStatus]) throws {
        let select = try db.cachedStatement(sql: "SELECT host, forwards FROM tunnel WHERE name = ?")
        guard let row = try Row.fetchOne(select, arguments: [tunnel]) else { throw StoreError.unknownTunnel(tunnel) }
        let host: String = row["host"]
        let old = try TunnelRow.decode(row["forwards"], tunnel: tunnel)
        let new = Self.merge(forwards, keepingFrom: old, all: false)
        for forward in new {
            guard let ok = forward.ok else { continue }
            let before = old.first { $0.kind == forward.kind && $0.spec == forward.spec }?.ok
            guard before != ok, before != nil || !ok else { continue }
            try append(db, time: time, kind: .probe, tunnel: tunnel, host: host,
                       from: before.map { $0 ? "ok" : "failed" }, to: ok ? "ok" : "failed",
                       message: "\(forward.probe) probe of \(forward.kind) forward \(forward.spec) \(ok ? "ok again" : "failed")")
        }
        let update = try db.cachedStatement(sql: "UPDATE tunnel SET forwards = ?, probeMs = ?, updatedAt = ?, lastProbe = ? WHERE name = ?")
        try update.execute(arguments: [TunnelRow.encode(new), new.compactMap(\.probeMs).max(), time, time, tunnel])
    }

    private func setAllocatedPort(_ db: Database, time: Double, _ tunnel: String, spec: String, port: Int) throws {
        var row = try existing(db, tunnel)
        var forwards = try row.decodedForwards()
        guard let index = forwards.firstIndex(where: { $0.spec == spec }) else {
            throw StoreError.unknownForward(tunnel: tunnel, spec: spec)
        }
        forwards[index].allocatedPort = port
        row.forwards = try TunnelRow.encode(forwards)
        row.updatedAt = time
        try row.update(db)
    }

    /// Forgets a tunnel that is no longer configured, with its counters. Its events stay until pruned with the oldest.
    package func remove(_ tunnel: String) throws {
        try writing { db in
            _ = try TunnelRow.deleteOne(db, key: tunnel)
            try Self.forgetTallies(db, tunnel: tunnel)
        }
    }

    /// A tunnel's counters and histograms end with its row: a tunnel added again under that name starts from 0.
    private static func forgetTallies(_ db: Database, tunnel: String) throws {
        try db.execute(sql: "DELETE FROM tally WHERE subject = ? AND metric IN (?, ?)",
                       arguments: [tunnel, TallyMetric.probeSeconds.rawValue, TallyMetric.probeFailures.rawValue])
    }

    /// Forgets the tunnels not in `keeping` that are wanted down and are down (or failed): tunnels removed
    /// from the config, once nothing of them runs. Their counters go with them (a series that ends may start
    /// again from 0).
    /// Every reconcile (each `fwd up`) asks, and there is almost never anything to forget: the names are read
    /// first, and a write transaction is opened only when some are there.
    package func forgetDown(keeping: Set<String>) throws {
        let forgotten = try database.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM tunnel WHERE desired = ? AND state IN (?, ?)",
                                arguments: [DesiredState.down.rawValue, TunnelState.down.rawValue, TunnelState.failed.rawValue])
        }.filter { !keeping.contains($0) }
        guard !forgotten.isEmpty else { return }
        try database.write { db in
            for name in forgotten {
                _ = try TunnelRow.deleteOne(db, key: name)
                try Self.forgetTallies(db, tunnel: name)
            }
        }
    }

    // MARK: Reads

    /// All tunnels, ordered by name.
    package func tunnels() throws -> [TunnelStatus] {
        try reading { db in try TunnelRow.order(Column("name")).fetchAll(db).map { try $0.status() } }
    }

    /// The named tunnels that have a row, read in one transaction.
    package func tunnels(named names: [String]) throws -> [String: TunnelStatus] {
        try reading { db in
            try Dictionary(uniqueKeysWithValues: TunnelRow.fetchAll(db, keys: names).map { try ($0.name, $0.status()) })
        }
    }

    package func tunnel(_ name: String) throws -> TunnelStatus? {
        try reading { db in try TunnelRow.fetchOne(db, key: name)?.status() }
    }

    /// Events with an id above `after`, oldest first; pass the last id seen to follow the log.
    package func events(tunnel: String? = nil, after id: Int64 = 0, limit: Int = 1000) throws -> [Event] {
        try reading { db in
            var request = EventRow.filter(Column("id") > id)
            if let tunnel { request = request.filter(Column("tunnel") == tunnel) }
            return try request.order(Column("id")).limit(limit).fetchAll(db).map { try $0.event() }
        }
    }

    /// The id of the latest event (0 with none), to follow the log from now on.
    package func lastEventID() throws -> Int64 {
        try reading { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM event") ?? 0 }
    }

    // MARK: Masters

    /// Remembers a running ControlMaster, so a supervisor restarted after SIGKILL can find it.
    package func saveMaster(_ m: MasterRecord) throws {
        try writing { db in try MasterRow(m).save(db) }
    }

    package func removeMaster(host: String) throws {
        _ = try writing { db in try MasterRow.deleteOne(db, key: host) }
    }

    package func masters() throws -> [MasterRecord] {
        try reading { db in try MasterRow.order(Column("host")).fetchAll(db).map(\.record) }
    }

    // MARK: Inspection (tests, diagnostics)

    func journalMode() throws -> String {
        try reading { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    func appliedMigrations() throws -> [String] {
        try reading { db in try StoreSchema.migrator.appliedMigrations(db) }
    }

    // MARK: Helpers

    /// `database.read` and `database.write`, with a database found damaged on the way reported as such.
    private func reading<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.read(body) } catch { throw path.map { StoreError.translating(error, path: $0) } ?? error }
    }

    private func writing<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.write(body) } catch { throw path.map { StoreError.translating(error, path: $0) } ?? error }
    }

    private func existing(_ db: Database, _ tunnel: String) throws -> TunnelRow {
        guard let row = try TunnelRow.fetchOne(db, key: tunnel) else { throw StoreError.unknownTunnel(tunnel) }
        return row
    }

    private func append(_ db: Database, time: Double, kind: EventKind, tunnel: String?, host: String?,
                        from: String?, to: String?, message: String) throws {
        var row = EventRow(id: nil, time: time, tunnel: tunnel, host: host, kind: kind.rawValue, fromState: from, toState: to, message: message)
        try row.insert(db)
        // Ids only grow (AUTOINCREMENT), so the newest `eventRetention` are the ids above last − retention. Pruned
        // in batches of a 64th of the retention, so the delete runs rarely and the table stays within 2 % of it.
        if let id = row.id, id % max(1, eventRetention / 64) == 0 {
            try db.execute(sql: "DELETE FROM event WHERE id <= ?", arguments: [id - eventRetention])
        }
    }

    /// `new` with what was observed of the same forwards in `old`: the allocated port always (the server
    /// keeps it while the forward lives), and when `all`, the last probe result too.
    private static func merge(_ new: [ForwardStatus], keepingFrom old: [ForwardStatus], all: Bool) -> [ForwardStatus] {
        new.map { forward in
            guard let previous = old.first(where: { $0.kind == forward.kind && $0.spec == forward.spec }) else { return forward }
            var merged = forward
            merged.allocatedPort = forward.allocatedPort ?? previous.allocatedPort
            // Probe results arrive without the range; the row keeps what `initial` recorded.
            merged.range = forward.range ?? previous.range
            if all {
                merged.probeMs = forward.probeMs ?? previous.probeMs
                merged.ok = forward.ok ?? previous.ok
                merged.shared = forward.shared ?? previous.shared
            }
            return merged
        }
    }

    /// Creates the database file at mode 0600, or tightens an existing one by path. It never opens an existing
    /// file: closing any descriptor of a file drops every POSIX lock this process holds on it, SQLite's too. A
    /// Store already open in this process (`fwd run` has two) would then look closed to other processes, and
    /// the next one to close its connection would checkpoint and delete the WAL under it: every later commit
    /// would go to a deleted file.
    private static func createPrivateFile(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)  // a new file: no connection of this process has locks on it
        } else if errno != EEXIST {
            throw FileSystemError.failed(path: path, action: "create", errno: errno)
        }
        // open's mode is filtered by the umask, and an existing file keeps its own mode.
        if chmod(path, 0o600) != 0 { throw FileSystemError.failed(path: path, action: "set mode 0600 on", errno: errno) }
    }

    private static func holdingLock<T>(_ lockPath: String, _ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError.failed(path: lockPath, action: "open", errno: errno) }
        defer { close(fd) }  // closing releases the lock
        if fchmod(fd, 0o600) != 0 { throw FileSystemError.failed(path: lockPath, action: "set mode 0600 on", errno: errno) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw FileSystemError.failed(path: lockPath, action: "lock", errno: errno) }
        }
        return try body()
    }
}
