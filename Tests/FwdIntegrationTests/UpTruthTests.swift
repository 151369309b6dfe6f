import Foundation
import Testing
@testable import FwdCore
import FwdLab

/// `fwd up` says what happened as soon as it is known (issue 21): after the first failed attempt of a failure
/// fwd retries, in ssh's words, with the next try and how to stop it; `--wait` waits through the retries; a port
/// in use is taken once it frees; a host gives up after its `max_attempts`.
@Suite(.serialized) struct UpTruthTests {
    /// Whether `condition` holds within `seconds`, checked every 50 ms.
    static func within(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    func setUp(_ f: FwdFixture, hostBlock: String = "") throws -> Int {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let port = try LocalPort.free()
        try f.write(config: "\(hostBlock)[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n")
        return port
    }

    /// A server that refuses connections: `fwd up` is back in under 3 s (not the 30 s timeout) with ssh's
    /// reason and the retry, `status` shows the reason and the retry's fields, and the tunnel comes up by itself
    /// once the server listens.
    @Test func refusedConnectionReturnsAtOnceAndKeepsRetrying() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            f.sshd.stop()
            let start = Date()
            let up = try f.fwd("up", "wiki")
            let seconds = Date().timeIntervalSince(start)
            print("fwd up against a refusing server returned in \(String(format: "%.2f", seconds)) s:\n\(up.stderr)")
            #expect(!up.ok)
            #expect(seconds < 3, "took \(seconds) s")
            #expect(up.stderr.contains("wiki: starting — "), "\(up.stderr)")
            #expect(up.stderr.contains("Connection refused"), "ssh's words: \(up.stderr)")
            #expect(up.stderr.contains("fwd keeps trying in the background after 1 failed attempt (next try in "), "\(up.stderr)")
            #expect(up.stderr.contains("`fwd down wiki` stops it"), "\(up.stderr)")

            let row = try #require(try f.reportedStatus("wiki"))
            #expect(row["state"] as? String == "starting")
            #expect((row["last_error"] as? String)?.contains("Connection refused") == true, "\(row)")
            #expect((row["attempts"] as? Int ?? 0) >= 1, "\(row)")
            #expect((row["restarts"] as? Int ?? 0) >= 1, "RESTARTS counts the attempts: \(row)")
            #expect(row["next_retry"] is String, "\(row)")
            #expect(row["last_probe"] is NSNull, "\(row)")
            let plain = try f.fwd("status", "wiki")
            #expect(plain.stdout.contains("Connection refused"), "\(plain.stdout)")

            // Asked again while fwd waits for the server's port: one attempt at once, and its outcome, fast.
            try await Task.sleep(for: .seconds(1.5))
            let again = Date()
            let second = try f.fwd("up", "wiki")
            #expect(Date().timeIntervalSince(again) < 3, "\(second.stderr)")
            #expect(second.stderr.contains("Connection refused") && second.stderr.contains("fwd keeps trying in the background after "), "\(second.stderr)")
            #expect((try f.reportedStatus("wiki")?["attempts"] as? Int ?? 0) >= 2)

            try f.sshd.start()
            #expect(f.waitForState("wiki", .up, timeout: 40) != nil, "the retry brings it up by itself")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
            let after = try #require(try f.reportedStatus("wiki"))
            #expect(after["attempts"] as? Int == 0, "\(after)")
            #expect(after["next_retry"] is NSNull, "\(after)")
            #expect(after["last_probe"] is String, "\(after)")
        }
    }

    /// `--wait` waits through the retries: against a refusing server it waits out its timeout and ends with
    /// the reason (never a bare "timed out"); when the server comes back meanwhile, it ends with the tunnel up.
    @Test func waitWaitsThroughRetries() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            f.sshd.stop()
            let start = Date()
            let up = try f.fwd("up", "wiki", "--wait", "--timeout", "4")
            let seconds = Date().timeIntervalSince(start)
            #expect(!up.ok)
            #expect(seconds >= 4, "waited \(seconds) s")
            #expect(up.stderr.contains("wiki: starting — "), "\(up.stderr)")
            #expect(up.stderr.contains("Connection refused"), "the last line keeps the reason: \(up.stderr)")
            #expect(up.stderr.contains("(timed out after 4 s); fwd keeps trying in the background"), "\(up.stderr)")

            let sshd = f.sshd
            let restart = Task.detached {
                try await Task.sleep(for: .seconds(2))
                try sshd.start()
            }
            let waited = try f.fwd("up", "wiki", "--wait", "--timeout", "40")
            try await restart.value
            #expect(waited.ok, "\(waited.stderr)")
            #expect(waited.stdout.contains("wiki: up"), "\(waited.stdout)")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
        }
    }

    /// A local port another program holds: `fwd up` says so at once, naming the holder, and that fwd keeps
    /// trying; no forward of the tunnel stays half up; once the program exits the tunnel comes up by itself.
    @Test func aFreedPortBringsTheTunnelUpByItself() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let squatter = try TinyHTTPServer(body: "someone else")
            let taken = squatter.port
            let other = try LocalPort.free()
            try f.write(config: """
            [tunnels.clash]
            host = "lab"
            local = ["\(other):127.0.0.1:\(f.web.port)", "\(taken):127.0.0.1:\(f.web.port)"]
            """)
            let start = Date()
            let up = try f.fwd("up", "clash")
            #expect(Date().timeIntervalSince(start) < 10)
            #expect(!up.ok)
            #expect(up.stderr.contains("clash: starting — local port \(taken) is already in use (held by "), "\(up.stderr)")
            #expect(up.stderr.contains("pid \(getpid())"), "names the holder: \(up.stderr)")
            #expect(up.stderr.contains("fwd takes it once it is free"), "\(up.stderr)")
            #expect(up.stderr.contains("fwd keeps trying in the background"), "\(up.stderr)")
            // No half tunnel while the port is taken: the other forward is cancelled, and the checks that follow
            // (after 0.5, 1, 2 s) try the taken port first.
            let cancelled = Date()
            while LocalPort.isAccepting(port: other), Date().timeIntervalSince(cancelled) < 2 { usleep(20_000) }
            for _ in 0..<20 {
                #expect(!LocalPort.isAccepting(port: other), "no half tunnel while the port is taken")
                usleep(100_000)
            }
            #expect(try HTTPGet.fetch(host: "127.0.0.1", port: taken).body == "someone else")

            squatter.stop()
            #expect(f.waitForState("clash", .up, timeout: 15) != nil, "the freed port is taken by itself")
            #expect(f.fetchRetrying(port: taken)?.body == f.pageBody)
            #expect(f.fetchRetrying(port: other)?.body == f.pageBody)
            let row = try #require(try f.reportedStatus("clash"))
            #expect(row["last_error"] is NSNull, "no word of the program that exited: \(row)")
        }
    }

    /// The server cannot listen on a -R port (something holds it there): the verdict comes with `fwd up`, in
    /// ssh's words, with the retry.
    @Test func aServerSidePortConflictIsReportedAtOnce() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            // The lab's sshd runs on this machine: a port held here is held on the server.
            let squatter = try TinyHTTPServer(body: "someone else")
            defer { squatter.stop() }
            try f.write(config: "[tunnels.back]\nhost = \"lab\"\nremote = \"127.0.0.1:\(squatter.port):127.0.0.1:\(f.web.port)\"\n")
            let start = Date()
            let up = try f.fwd("up", "back")
            let seconds = Date().timeIntervalSince(start)
            #expect(!up.ok)
            #expect(seconds < 5, "took \(seconds) s: \(up.stderr)")
            #expect(up.stderr.contains("remote port forwarding failed for listen port \(squatter.port)"), "\(up.stderr)")
            #expect(up.stderr.contains("fwd keeps trying in the background after 1 failed attempt"), "\(up.stderr)")
            #expect(f.state("back") == .starting)
        }
    }

    /// `max_attempts` in `[hosts.X]`: the host gives up after that many failed attempts in a row and says so;
    /// `retry_max_delay` caps the wait between them.
    @Test func aHostGivesUpAfterMaxAttempts() async throws {
        try await FwdFixture.with { f in
            _ = try setUp(f, hostBlock: "[hosts.lab]\nmax_attempts = 3\nretry_max_delay = 1\n\n")
            f.sshd.stop()
            #expect(try !f.fwd("up", "wiki").ok)
            #expect(f.waitForState("wiki", .failed, timeout: 20) != nil)
            let row = try #require(try f.reportedStatus("wiki"))
            let error = row["last_error"] as? String ?? ""
            #expect(error.contains("Connection refused"), "\(error)")
            #expect(error.contains("fwd gave up after 3 failed attempts (max_attempts in [hosts.lab]); `fwd up wiki` tries again"), "\(error)")
            #expect(row["next_retry"] is NSNull, "\(row)")
        }
    }

    /// A bad retry setting is refused at file:line:col and nothing starts.
    @Test func badRetrySettingsAreRefused() async throws {
        try await FwdFixture.with { f in
            _ = try setUp(f, hostBlock: "[hosts.lab]\nmax_attempts = -1\n\n")
            let up = try f.fwd("up", "wiki")
            #expect(!up.ok)
            #expect(up.stderr.contains("fwd.toml:2:"), "\(up.stderr)")
            #expect(up.stderr.contains("max_attempts"), "\(up.stderr)")
            #expect(f.supervisorProcesses().isEmpty)
        }
    }

    /// `fwd up` with no names lists what it can bring up; shell-style patterns and `--all` select tunnels; a
    /// mistyped subcommand gets a suggestion instead of a usage dump.
    @Test func upListsChoicesTakesPatternsAndAllAndTyposGetASuggestion() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let (a, b, w) = (try LocalPort.free(), try LocalPort.free(), try LocalPort.free())
            try f.write(config: """
            [tunnels.db-a]
            host = "lab"
            local = "\(a):127.0.0.1:\(f.web.port)"

            [tunnels.db-b]
            host = "lab"
            local = "\(b):127.0.0.1:\(f.web.port)"

            [tunnels.wiki]
            host = "lab"
            local = "\(w):127.0.0.1:\(f.web.port)"

            [groups]
            work = ["wiki"]
            """)
            let none = try f.fwd("up")
            #expect(none.status == .exited(64))
            #expect(none.stderr.contains("  tunnels: db-a, db-b, wiki\n"), "\(none.stderr)")
            #expect(none.stderr.contains("  groups:  work (wiki)\n"), "\(none.stderr)")
            #expect(!none.stderr.contains("USAGE"), "\(none.stderr)")
            #expect(f.supervisorProcesses().isEmpty, "nothing started")

            let nothing = try f.fwd("up", "x*")
            #expect(!nothing.ok)
            #expect(nothing.stderr.contains("no tunnel or group matches \"x*\""), "\(nothing.stderr)")

            let pattern = try f.fwd("up", "db-*")
            #expect(pattern.ok, "\(pattern.stderr)")
            #expect(f.state("db-a") == .up && f.state("db-b") == .up)
            #expect(f.state("wiki") != .up)

            let all = try f.fwd("up", "--all")
            #expect(all.ok, "\(all.stderr)")
            #expect(f.state("wiki") == .up)
            #expect(try !f.fwd("up", "--all", "wiki").ok, "names or --all, not both")

            let typo = try f.fwd("stauts")
            #expect(typo.status == .exited(64))
            #expect(typo.stderr.contains("unknown command \"stauts\"; did you mean \"status\"?"), "\(typo.stderr)")
            #expect(try f.fwd("down", "--all").ok)
        }
    }

    /// A plain ssh master fwd did not start holds fwd's ControlPath: `fwd up` says so at once (not after its
    /// timeout) and how to end it, and takes the path by itself once that session ends.
    @Test func aForeignMasterOnTheControlPathIsReportedAtOnce() async throws {
        try await FwdFixture.with { f in
            let port = try setUp(f)
            #expect(try f.fwd("up", "wiki").ok)
            let show = try JSONSerialization.jsonObject(with: Data(try f.fwd("show", "wiki", "--json").stdout.utf8)) as? [String: Any]
            let socket = try #require(show?["control_path"] as? String)
            #expect(try f.fwd("down", "wiki").ok)
            #expect(Self.within(10) { !FileSystem.exists(socket) })
            let foreign = try ChildProcess(["ssh", "-F", f.userSSHConfig, "-o", "ControlMaster=yes", "-o", "ControlPath=\(socket)", "-N", "lab"])
            defer { foreign.kill() }
            #expect(Self.within(10) { FileSystem.exists(socket) }, "the foreign master is up")

            let start = Date()
            let up = try f.fwd("up", "wiki")
            let seconds = Date().timeIntervalSince(start)
            #expect(!up.ok)
            #expect(seconds < 8, "took \(seconds) s")
            #expect(up.stderr.contains("an ssh master fwd did not start already serves \(socket)"), "\(up.stderr)")
            #expect(up.stderr.contains("fwd keeps trying in the background after 1 failed attempt"), "\(up.stderr)")

            foreign.terminate()
            _ = foreign.waitExit(timeout: 10)
            #expect(f.waitForState("wiki", .up, timeout: 40) != nil, "the path is taken once the session ended")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
        }
    }

    /// On a terminal, `fwd up --wait` shows each attempt and its reason as it happens, then the tunnel up.
    @Test func progressLinesShowEachAttemptAndItsReason() async throws {
        try await FwdFixture.with { f in
            _ = try setUp(f)
            f.sshd.stop()
            try PseudoTerminal.with([FwdFixture.binary, "up", "wiki", "--wait", "--timeout", "40"], environment: f.environment) { t in
                let failed = t.read(since: 0, timeout: 20) { $0.contains("(attempt 1 failed)") }
                #expect(failed.contains("  wiki: starting — ssh: connect to host 127.0.0.1 port \(f.sshd.port): Connection refused (attempt 1 failed)"), "\(failed)")
                let mark = t.mark
                try f.sshd.start()
                let up = t.read(since: mark, timeout: 40) { $0.contains("wiki: up") }
                #expect(up.contains("wiki: up"), "\(up)")
                #expect(t.child.waitExit(timeout: 10) == .exited(0))
            }
        }
    }
}
