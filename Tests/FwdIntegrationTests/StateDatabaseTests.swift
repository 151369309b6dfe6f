import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A state database fwd cannot use, a damaged file or one a newer fwd migrated, through the real binary: each
/// command that needs its rows names the file, what is wrong and how to move it aside; `fwd doctor` reports
/// it; `fwd down --all` still stops everything; the daemon exits 78 (docs/reliability.md, "State database").
@Suite(.serialized) struct StateDatabaseTests {
    /// The wiki tunnel on a free port, through the lab's sshd; returns the port.
    func setUp(_ f: FwdFixture) throws -> Int {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let port = try LocalPort.free()
        try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n")
        return port
    }

    var database: (FwdFixture) -> String { { $0.stateDir + "/fwd.db" } }

    /// What every command that reads rows must say, with its status.
    func expectRefused(_ f: FwdFixture, _ what: String, _ arguments: String...) throws {
        let run = try f.fwd(arguments: arguments)
        #expect(run.status == .exited(1), "fwd \(arguments.joined(separator: " ")): \(run.status) \(run.stdout)")
        #expect(run.stderr.contains("the state database \(database(f))"), "\(run.stderr)")
        #expect(run.stderr.contains(what), "fwd \(arguments.joined(separator: " ")): \(run.stderr)")
        #expect(run.stderr.contains("mv \(database(f)) \(database(f)).bad"), "names how to move it aside: \(run.stderr)")
        #expect(!run.stderr.contains("SQLite error 26"), "not a bare SQLite error: \(run.stderr)")
    }

    func doctorFinding(_ f: FwdFixture) throws -> [String: Any]? {
        let run = try f.fwd("doctor", "--json")
        #expect(run.status == .exited(1), "a database fwd cannot use is a problem: \(run.stdout)\(run.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)\(run.stderr)")
        let findings = try #require(report["findings"] as? [[String: Any]])
        return findings.first { $0["check"] as? String == "database" }
    }

    /// A newer fwd migrated the database while this fwd's supervisor runs the wiki: commands refuse with the
    /// schema versions, doctor names it, `fwd down --all` stops the supervisor and its master anyway, and the
    /// advice (move it aside, `fwd up`) gets the tunnel back with fwd.toml untouched.
    @Test func aNewerSchemaIsRefusedAndDownAllStillStopsEverything() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            let up = try f.fwd("up", "wiki")
            #expect(up.ok, "\(up.stderr)")
            #expect(f.masters().count == 1)
            let config = try #require(FileSystem.read(f.configPath))

            let sqlite = try f.run(["sqlite3", database(f), "INSERT INTO grdb_migrations VALUES ('v4-from-the-future')"])
            #expect(sqlite.ok, "\(sqlite.stderr)")

            let newer = "was written by a newer fwd (schema 4 > 3, the newest this fwd knows)"
            try expectRefused(f, newer, "status")
            try expectRefused(f, newer, "up", "wiki")
            try expectRefused(f, newer, "logs", "wiki")
            try expectRefused(f, newer, "down", "wiki")

            let finding = try #require(try doctorFinding(f), "doctor has a database finding")
            #expect(finding["status"] as? String == "problem")
            #expect((finding["message"] as? String)?.contains("\(database(f)) \(newer)") == true, "\(finding)")
            #expect((finding["fix"] as? String)?.contains("mv \(database(f)) \(database(f)).bad") == true, "\(finding)")
            #expect((finding["fix"] as? String)?.contains("upgrade fwd") == true, "\(finding)")
            let plain = try f.fwd("doctor")
            #expect(plain.stdout.contains("problem database: the state database \(database(f)) \(newer)"), "\(plain.stdout)")

            let down = try f.fwd("down", "--all")
            #expect(down.ok, "\(down.stdout)\(down.stderr)")
            #expect(down.stdout.contains("stopped the supervisor"), "\(down.stdout)")
            #expect(down.stderr.contains(newer), "says why nothing was recorded: \(down.stderr)")
            #expect(f.supervisorProcesses().isEmpty, "the supervisor stopped")
            #expect(f.masters().isEmpty, "its master stopped")
            #expect(!LocalPort.isAccepting(port: port))

            // The advice works: move the database aside (with what SQLite keeps beside it), and `fwd up` again.
            let advice = try f.fwd("status").stderr
            let command = try #require(advice.components(separatedBy: "`fwd down --all; ").last?.components(separatedBy: "`").first)
            let move = try f.run(["/bin/sh", "-c", command])
            #expect(move.ok, "\(command): \(move.stderr)")
            #expect(FileSystem.exists(database(f) + ".bad"))
            let again = try f.fwd("up", "wiki")
            #expect(again.ok, "\(again.stderr)")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            #expect(FileSystem.read(f.configPath) == config, "fwd.toml is untouched")
            let healthy = try f.fwd("doctor", "--verbose")
            #expect(healthy.stdout.contains("database: \(database(f)) reads"), "\(healthy.stdout)")
        }
    }

    /// The supervisor was killed (its master lives on) and the database is now garbage: commands refuse and
    /// name it, doctor names it, the daemon exits 78, and `fwd down --all` ends fwd's master through its
    /// socket, but not a plain ssh master of the user's in the same directory.
    @Test func aDamagedDatabaseIsNamedAndDownAllEndsTheMastersWithoutIt() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            #expect(try f.fwd("up", "wiki").ok)
            let master = try #require(f.masters().first)
            for pid in f.supervisorProcesses() { kill(pid, SIGKILL) }
            #expect(ProcessTable.isAlive(master), "the master outlives its supervisor")

            // The user's own master on a socket in the same directory (as `ControlMaster auto` makes one).
            let userSocket = f.paths.controlDirectory + "/user-session"
            let user = try ChildProcess(["/usr/bin/ssh", "-F", f.userSSHConfig, "-N", "-o", "ControlMaster=yes",
                                         "-o", "ControlPath=\(userSocket)", "lab"], outputPath: f.dir + "/user-ssh.log")
            defer { user.kill() }
            let deadline = Date().addingTimeInterval(10)
            while !FileSystem.exists(userSocket), Date() < deadline { usleep(50_000) }
            #expect(FileSystem.exists(userSocket), "the user's master is up")

            for suffix in ["", "-wal", "-shm"] { unlink(database(f) + suffix) }
            try FileSystem.writeAtomically(String(repeating: "this is not a database\n", count: 200), to: database(f))

            let damaged = "cannot be read: it is not an SQLite database, or a damaged one (file is not a database)"
            try expectRefused(f, damaged, "status")
            try expectRefused(f, damaged, "status", "--json")
            try expectRefused(f, damaged, "up", "wiki")
            try expectRefused(f, damaged, "logs")

            let finding = try #require(try doctorFinding(f), "doctor has a database finding")
            #expect(finding["status"] as? String == "problem")
            #expect((finding["message"] as? String)?.contains("\(database(f)) \(damaged)") == true, "\(finding)")
            #expect((finding["fix"] as? String)?.contains("fwd.toml") == true, "\(finding)")

            let daemon = try f.fwd("daemon", timeout: 20)
            #expect(daemon.status == .exited(78), "EX_CONFIG, which the service unit does not restart: \(daemon.status) \(daemon.stderr)")
            #expect(daemon.stderr.contains(damaged), "\(daemon.stderr)")

            let down = try f.fwd("down", "--all")
            #expect(down.ok, "\(down.stdout)\(down.stderr)")
            #expect(down.stdout.contains("ended the ssh master (pid \(master))"), "\(down.stdout)")
            let gone = Date().addingTimeInterval(5)
            while ProcessTable.isAlive(master) && ProcessTable.state(of: master) != "Z", Date() < gone { usleep(50_000) }
            #expect(!ProcessTable.isAlive(master) || ProcessTable.state(of: master) == "Z", "fwd's master ended")
            #expect(!LocalPort.isAccepting(port: port))
            #expect(user.waitExit(timeout: 0.5) == nil, "the user's own master is not fwd's to end")
            #expect(FileSystem.exists(userSocket))
            #expect(FileSystem.read(database(f))?.hasPrefix("this is not a database") == true, "down --all leaves the file as it was")
        }
    }

    /// A row this fwd cannot read (a state a newer fwd added) in a database that opens: `fwd down --all` does
    /// not need it either.
    @Test func anUnreadableRowDoesNotKeepAnythingUp() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            #expect(try f.fwd("up", "wiki").ok)
            let sqlite = try f.run(["sqlite3", database(f), "UPDATE tunnel SET state = 'hovering'"])
            #expect(sqlite.ok, "\(sqlite.stderr)")
            let status = try f.fwd("status")
            #expect(status.status == .exited(1))
            #expect(status.stderr.contains("cannot read the tunnel row \"wiki\""), "\(status.stderr)")
            let down = try f.fwd("down", "--all")
            #expect(down.ok, "\(down.stdout)\(down.stderr)")
            #expect(f.supervisorProcesses().isEmpty && f.masters().isEmpty)
            #expect(!LocalPort.isAccepting(port: port))
        }
    }
}
