import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The per-host ssh logs (STATE/logs/HOST.log, the masters' stderr) through the real binary: capped at
/// `LogFile.cap` with one older generation, at spawn and while ssh writes, and a master's exit classified from
/// its own run's lines only (docs/reliability.md, "Per-host ssh logs").
@Suite(.serialized) struct LogCapTests {
    func log(_ f: FwdFixture) -> String { f.paths.sshLog(host: "lab") }

    func setUp(_ f: FwdFixture, target: Int? = nil, probe: String = "http") throws -> Int {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let port = try LocalPort.free()
        try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(target ?? f.web.port)\"\nprobe = \"\(probe)\"\n")
        try FileSystem.makePrivateDirectory(f.paths.logDirectory)
        return port
    }

    /// The row's last error once the supervisor has classified a failed start.
    func lastError(_ f: FwdFixture) throws -> String {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let error = try f.reportedStatus("wiki")?["last_error"] as? String, !error.isEmpty { return error }
            usleep(100_000)
        }
        return ""
    }

    /// An earlier run's "Permission denied" (fatal: fwd would stop retrying) is in the log; this run fails with
    /// "Connection refused" (retried). The row says the latter.
    @Test func theExitIsClassifiedFromThisRunsLinesOnly() async throws {
        try await FwdFixture.with { f in
            _ = try setUp(f)
            try FileSystem.writeAtomically("root@lab: Permission denied (publickey).\n", to: log(f))
            f.sshd.stop()
            let up = try f.fwd("up", "wiki", "--timeout", "4")
            #expect(!up.ok)
            let error = try lastError(f)
            #expect(error.contains("Connection refused"), "\(error)")
            #expect(!error.contains("Permission denied"), "an old run's line is not this run's reason: \(error)")
            #expect(f.state("wiki") != .failed, "a refused connection is retried, not fatal")
        }
    }

    /// A log over the cap when a master starts becomes HOST.log.1, byte for byte; the new run writes a fresh
    /// HOST.log, and its exit is classified from that.
    @Test func aFullLogIsRotatedAtSpawnKeepingOneGeneration() async throws {
        try await FwdFixture.with { f in
            _ = try setUp(f)
            let line = "root@lab: Permission denied (publickey).\n"
            let old = String(repeating: line, count: Int(LogFile.cap) / line.utf8.count + 100)
            try FileSystem.writeAtomically(old, to: log(f))
            try FileSystem.writeAtomically("an older generation\n", to: log(f) + ".1")
            f.sshd.stop()
            _ = try f.fwd("up", "wiki", "--timeout", "4")
            let error = try lastError(f)
            #expect(error.contains("Connection refused") && !error.contains("Permission denied"), "\(error)")

            #expect(FileSystem.read(log(f) + ".1") == old, "the full log is the one older generation, unchanged")
            let current = try #require(FileSystem.read(log(f)))
            #expect(current.contains("Connection refused"), "\(current)")
            #expect(!current.contains("Permission denied"))
            #expect(UInt64(current.utf8.count) < LogFile.cap)
            #expect(FileSystem.mode(of: log(f)) == 0o600)
            #expect(FileSystem.mode(of: log(f) + ".1") == 0o600)
            #expect(!FileSystem.exists(log(f) + ".2"), "one generation only")
        }
    }

    /// A degraded forward: its master logs a line at each probe. Pushed over the cap while ssh holds the log
    /// open, the log is copied to HOST.log.1 and truncated in place; ssh's next lines land at its start (no hole
    /// of zeros: ssh's descriptor is O_APPEND), and `fwd logs` shows them.
    @Test func aLogOverTheCapWhileSSHWritesIsCopiedAndTruncated() async throws {
        try await FwdFixture.with { f in
            let closed = try LocalPort.free()
            _ = try setUp(f, target: closed, probe: "tcp")
            let up = try f.fwd("up", "wiki", "--timeout", "10")
            #expect(!up.ok, "the target is closed: degraded")
            #expect(f.waitForState("wiki", .degraded, timeout: 10) != nil)
            let master = try #require(f.masters().first)
            let path = log(f)
            #expect(waitUntil { FileSystem.read(path)?.contains("open failed") == true }, "the master logs each probe")

            // What a long-degraded forward would have written over days, at once.
            let filler = String(repeating: "filler line of an earlier day\n", count: Int(LogFile.cap) / 30 + 1000)
            let handle = try #require(FileHandle(forUpdatingAtPath: path))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(filler.utf8))
            try handle.close()

            #expect(waitUntil { (LogFile.size(of: path + ".1") ?? 0) > LogFile.cap }, "copied to the older generation")
            #expect(FileSystem.read(path + ".1")?.contains("filler line of an earlier day") == true)
            #expect(waitUntil { FileSystem.read(path)?.contains("open failed") == true }, "ssh keeps writing to the truncated log")
            let bytes = try #require(FileSystem.readBytes(path))
            #expect(!bytes.contains(0), "no hole: ssh's writes went to the new end")
            #expect(bytes.count < 64 << 10, "\(bytes.count) bytes")
            #expect(!String(decoding: bytes, as: UTF8.self).contains("filler"))
            #expect(FileSystem.mode(of: path) == 0o600)
            #expect(FileSystem.mode(of: path + ".1") == 0o600)
            #expect(f.masters() == [master], "the same master, still running")

            let logs = try f.fwd("logs", "wiki")
            #expect(logs.stdout.contains("--- ssh messages for lab"), "\(logs.stdout)")
            #expect(logs.stdout.contains("open failed"), "\(logs.stdout)")
        }
    }

    func waitUntil(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }
}
