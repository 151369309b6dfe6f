import Foundation
import GRDB

/// The database schema. Migrations ship by name and are never edited afterwards: change the schema by
/// registering a new one ("v2-…") below the last.
enum StoreSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "tunnel") { t in
                t.primaryKey("name", .text)
                t.column("host", .text).notNull()
                t.column("desired", .text).notNull()
                t.column("state", .text).notNull()
                t.column("pid", .integer)
                t.column("since", .double).notNull()
                t.column("restarts", .integer).notNull().defaults(to: 0)
                t.column("probeMs", .double)
                t.column("lastError", .text)
                t.column("forwards", .text).notNull().defaults(to: "[]")
                t.column("updatedAt", .double).notNull()
            }
            // AUTOINCREMENT keeps ids strictly increasing, so `fwd logs -f` can poll with "after id".
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .double).notNull()
                t.column("tunnel", .text)
                t.column("host", .text)
                t.column("kind", .text).notNull()
                t.column("fromState", .text)
                t.column("toState", .text)
                t.column("message", .text).notNull()
            }
            try db.create(index: "event_on_tunnel", on: "event", columns: ["tunnel", "id"])
            try db.create(table: "master") { t in
                t.primaryKey("host", .text)
                t.column("pid", .integer).notNull()
                t.column("startTime", .integer).notNull()
                t.column("socket", .text).notNull()
                t.column("startedAt", .double).notNull()
            }
        }
        // Retries (issue 21): the failed attempts in a row, when the next try is due, and when a probe last answered.
        migrator.registerMigration("v2-retries") { db in
            try db.alter(table: "tunnel") { t in
                t.add(column: "attempts", .integer).notNull().defaults(to: 0)
                t.add(column: "nextRetry", .double)
                t.add(column: "lastProbe", .double)
            }
        }
        // The metrics' counters and histograms (`Tally`), one row each, so they survive a supervisor restart.
        migrator.registerMigration("v3-tally") { db in
            try db.create(table: "tally") { t in
                t.column("metric", .text).notNull()
                t.column("subject", .text).notNull()
                t.column("count", .integer).notNull().defaults(to: 0)
                t.column("sum", .double).notNull().defaults(to: 0)
                t.column("buckets", .text).notNull().defaults(to: "[]")
                t.primaryKey(["metric", "subject"])
            }
        }
        return migrator
    }

    /// The schema version this fwd writes: the number of its last migration ("v1", "v2-…").
    static let version = migrator.migrations.compactMap(number).max() ?? 0

    /// The version of a database that has migrations this fwd does not know (a newer fwd migrated it), or nil.
    static func newerVersion(in db: Database) throws -> Int? {
        guard try migrator.hasBeenSuperseded(db) else { return nil }
        let known = Set(migrator.migrations)
        let unknown = try migrator.appliedIdentifiers(db).subtracting(known)
        // A name without a number is still a migration this fwd lacks: at least one version above its own.
        return max(version + 1, unknown.compactMap(number).max() ?? 0)
    }

    /// "v12-event-index" → 12.
    private static func number(_ identifier: String) -> Int? {
        guard identifier.hasPrefix("v") else { return nil }
        return Int(identifier.dropFirst().prefix { $0.isNumber })
    }
}

/// Row of `tunnel`. Dates are seconds since 1970 and `forwards` is JSON text, so the file reads plainly
/// in `sqlite3` too.
struct TunnelRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "tunnel"

    var name: String
    var host: String
    var desired: String
    var state: String
    var pid: Int?
    var since: Double
    var restarts: Int
    var probeMs: Double?
    var lastError: String?
    var forwards: String
    var updatedAt: Double
    var attempts: Int
    var nextRetry: Double?
    var lastProbe: Double?

    func status() throws -> TunnelStatus {
        guard let desired = DesiredState(rawValue: desired), let state = TunnelState(rawValue: state) else {
            throw StoreError.unreadable(table: Self.databaseTableName, key: name)
        }
        return TunnelStatus(
            name: name, host: host, desired: desired, state: state, pid: pid,
            since: Date(timeIntervalSince1970: since), restarts: restarts, probeMs: probeMs,
            lastError: lastError, forwards: try Self.decode(forwards, tunnel: name),
            updatedAt: Date(timeIntervalSince1970: updatedAt), attempts: attempts,
            nextRetry: nextRetry.map(Date.init(timeIntervalSince1970:)), lastProbe: lastProbe.map(Date.init(timeIntervalSince1970:)))
    }

    func decodedForwards() throws -> [ForwardStatus] { try Self.decode(forwards, tunnel: name) }

    static func encode(_ forwards: [ForwardStatus]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(forwards), as: UTF8.self)
    }

    static func decode(_ text: String, tunnel: String) throws -> [ForwardStatus] {
        do {
            return try JSONDecoder().decode([ForwardStatus].self, from: Data(text.utf8))
        } catch {
            throw StoreError.unreadable(table: databaseTableName, key: tunnel)
        }
    }
}

struct EventRow: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "event"

    var id: Int64?
    var time: Double
    var tunnel: String?
    var host: String?
    var kind: String
    var fromState: String?
    var toState: String?
    var message: String

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    func event() throws -> Event {
        guard let kind = EventKind(rawValue: kind) else { throw StoreError.unreadable(table: Self.databaseTableName, key: "\(id ?? 0)") }
        return Event(id: id ?? 0, time: Date(timeIntervalSince1970: time), tunnel: tunnel, host: host, kind: kind,
                     from: fromState, to: toState, message: message)
    }
}

struct MasterRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "master"

    var host: String
    var pid: Int
    /// SQLite integers are signed; the bit pattern round-trips any UInt64.
    var startTime: Int64
    var socket: String
    var startedAt: Double

    init(_ m: MasterRecord) {
        host = m.host
        pid = m.pid
        startTime = Int64(bitPattern: m.startTime)
        socket = m.socket
        startedAt = m.startedAt.timeIntervalSince1970
    }

    var record: MasterRecord {
        MasterRecord(host: host, pid: pid, startTime: UInt64(bitPattern: startTime), socket: socket,
                     startedAt: Date(timeIntervalSince1970: startedAt))
    }
}
