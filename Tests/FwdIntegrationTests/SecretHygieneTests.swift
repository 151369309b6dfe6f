import Foundation
import Testing
@testable import FwdCore

/// The secret-hygiene check finds a secret wherever it is planted, so its "found nowhere" means something.
@Suite("Secret hygiene check")
struct SecretHygieneTests {
    @Test("finds a secret in a file, a SQLite database, a command line and an environment")
    func findsPlanted() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-hyg-\(UUID().uuidString.prefix(8))").path
        try FileSystem.makePrivateDirectory(dir + "/state/logs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let secret = "s3cr3t-" + UUID().uuidString.prefix(8)
        #expect(SecretHygiene.findings(of: secret, directories: [dir]) == [])

        try FileSystem.writeAtomically("login ok\n", to: dir + "/state/logs/master.log")
        try FileSystem.writeAtomically("answer=\(secret)\n", to: dir + "/state/logs/leak.log")
        let db = dir + "/state/fwd.sqlite"
        let sqlite = try ChildProcess.run(["sqlite3", db, "CREATE TABLE events(message TEXT); INSERT INTO events VALUES('typed \(secret)');"])
        #expect(sqlite.exit == .exited(0))
        let found = SecretHygiene.findings(of: secret, directories: [dir + "/state"])
        #expect(found.sorted() == [db, dir + "/state/logs/leak.log"].sorted())

        var environment = ProcessInfo.processInfo.environment
        environment["LEAKED"] = secret
        let inEnvironment = try ChildProcess(["sleep", "30"], environment: environment)
        let inArgv = try ChildProcess(["/bin/sh", "-c", "sleep 30", secret])
        defer {
            inEnvironment.kill()
            inArgv.kill()
        }
        usleep(100_000)
        let procs = SecretHygiene.findings(of: secret, pids: [inEnvironment.pid, inArgv.pid, getpid()])
        #expect(procs == ["/proc/\(inEnvironment.pid)/environ", "/proc/\(inArgv.pid)/cmdline"])
    }
}
