import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's control socket against clients that misbehave, and the supervisor's own lifetime, through
/// the real binary and a real sshd.
@Suite(.serialized) struct ControlSocketTests {
    private func twoTunnels(_ f: FwdFixture) throws -> (a: Int, b: Int) {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let a = try LocalPort.free(), b = try LocalPort.free()
        try f.write(config: """
        [tunnels.a]
        host = "lab"
        local = "\(a):127.0.0.1:\(f.web.port)"
        [tunnels.b]
        host = "lab"
        local = "\(b):127.0.0.1:\(f.web.port)"
        """)
        return (a, b)
    }

    /// A connection to the supervisor's socket, raw: what a stray local process of the same user could do.
    private final class RawClient {
        private let socket: Descriptor
        var fd: Int32 { socket.raw }

        init(_ path: String) throws {
            socket = try UnixSocket.connect(path: path)
        }

        func write(_ bytes: [UInt8]) {
            _ = Posix.sendAll(fd, bytes)
        }

        /// The supervisor's answer (one line), or nil when it closes without one within `timeout` seconds.
        func reply(timeout: Double) -> ControlReply? {
            var data = [UInt8]()
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { break }
                data += chunk.prefix(n)
                if let newline = data.firstIndex(of: UInt8(ascii: "\n")) {
                    return try? JSONDecoder().decode(ControlReply.self, from: Data(data[..<newline]))
                }
            }
            return nil
        }
    }

    @Test func silentClientsWedgeNothingAndManyClientsAreServed() async throws {
        try await FwdFixture.with { f in
            let ports = try twoTunnels(f)
            #expect(try f.fwd("up", "a").ok)
            // Four local processes connect and say nothing (the report: two were enough to wedge everything).
            let silent = try (0..<4).map { _ in try RawClient(f.paths.supervisorSocket) }
            let up = try f.fwd("up", "b", timeout: 20)
            #expect(up.ok, "\(up.stderr)")
            #expect(f.fetchRetrying(port: ports.b)?.body == f.pageBody)
            let status = try f.fwd("status")
            #expect(status.ok, "\(status.stdout)\(status.stderr)")
            #expect(!status.stdout.contains("no supervisor"), "\(status.stdout)")
            #expect(status.stdout.contains("a ") && status.stdout.contains(" up "), "\(status.stdout)")
            let down = try f.fwd("down", "a")
            #expect(down.ok && down.stdout.contains("a: down"), "\(down.stdout)\(down.stderr)")

            // 100 `fwd status` at once all answer, with the truth.
            let results = try await withThrowingTaskGroup(of: FwdRun.self) { group in
                for _ in 0..<100 { group.addTask { try f.fwd("status", "b", timeout: 60) } }
                return try await group.reduce(into: [FwdRun]()) { $0.append($1) }
            }
            #expect(results.count == 100)
            #expect(results.allSatisfy { $0.ok && $0.stdout.contains(" up ") }, "\(results.filter { !$0.ok }.prefix(2))")

            // The silent ones are sent away after the read timeout, with a reason.
            for client in silent {
                let reply = client.reply(timeout: Control.requestTimeout + 3)
                #expect(reply == .failed(.timedOut(seconds: Int(Control.requestTimeout))))
            }
        }
    }

    @Test func malformedAndOversizedRequestsGetAnErrorAndTheSupervisorStaysUp() async throws {
        try await FwdFixture.with { f in
            _ = try twoTunnels(f)
            #expect(try f.fwd("up", "a").ok)
            let pid = try #require(f.supervisorProcesses().first)

            let garbage = try RawClient(f.paths.supervisorSocket)
            garbage.write(Array("{\"op\": \"explode\"}\n".utf8))
            let malformed = garbage.reply(timeout: 5)
            let isMalformed: Bool
            if case .failed(.malformed)? = malformed { isMalformed = true } else { isMalformed = false }
            #expect(isMalformed, "expected a malformed-request error, got \(String(describing: malformed))")

            let big = try RawClient(f.paths.supervisorSocket)
            big.write([UInt8](repeating: UInt8(ascii: "x"), count: Control.requestLimit + 10_000))
            #expect(big.reply(timeout: 5) == .failed(.tooLarge(limit: Control.requestLimit)))

            #expect(f.supervisorProcesses() == [pid])
            #expect(try f.fwd("up", "b").ok)
            #expect(try f.fwd("status").ok)
        }
    }

    @Test func onDemandSupervisorExitsWhenNothingIsWantedButADaemonStays() async throws {
        try await FwdFixture.with { f in
            _ = try twoTunnels(f)
            #expect(try f.fwd("up", "a", "b").ok)
            #expect(f.supervisorProcesses().count == 1)
            #expect(try f.fwd("down", "--all").ok)
            let start = Date()
            var gone: Double?
            while Date().timeIntervalSince(start) < 60 {
                if f.supervisorProcesses().isEmpty {
                    gone = Date().timeIntervalSince(start)
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            print("fwd idle exit: the on-demand supervisor left \(gone.map { String(format: "%.1f s", $0) } ?? "not within 60 s") after `fwd down --all`")
            #expect(gone != nil, "the supervisor started by `fwd up` is still running 60 s after nothing was wanted")
            #expect(f.sshProcesses().isEmpty)
            #expect(try f.fwd("status").stdout.contains("no supervisor"))

            // One the user (or a service manager) started stays, even with a short idle time set.
            let log = f.dir + "/daemon.out"
            let daemon = try ChildProcess([FwdFixture.binary, "daemon"], outputPath: log, environment: f.environment(["FWD_IDLE_EXIT": "1"]))
            defer { daemon.terminate(); _ = daemon.waitExit(timeout: 10) }
            var serving = false
            for _ in 0..<100 {
                serving = Control.runningPID(f.paths) != nil
                if serving { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(serving)
            #expect(try f.fwd("up", "a").ok)
            #expect(try f.fwd("down", "--all").ok)
            try await Task.sleep(for: .seconds(3))
            #expect(daemon.isRunning, "\(FileSystem.read(log) ?? "")")
        }
    }

    /// `fwd logs -f` is pushed each event as the supervisor records it, and `fwd daemon --stop` returns once
    /// the supervisor is gone with its masters.
    @Test func logsFollowIsPushedAndDaemonStopReturnsWhenStopped() async throws {
        try await FwdFixture.with { f in
            _ = try twoTunnels(f)
            #expect(try f.fwd("up", "a").ok)
            let out = f.dir + "/follow.out"
            let follow = try ChildProcess([FwdFixture.binary, "logs", "-f"], outputPath: out, environment: f.environment([:]))
            defer { follow.kill() }
            try await Task.sleep(for: .milliseconds(500))
            let start = Date()
            #expect(try f.fwd("up", "b").ok)
            var seen: Double?
            while Date().timeIntervalSince(start) < 5 {
                // On the live master b goes straight from down to up.
                if (FileSystem.read(out) ?? "").split(separator: "\n").contains(where: { $0.contains("  b  state ") && $0.contains("→ up") }) {
                    seen = Date().timeIntervalSince(start)
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            print("fwd logs -f: b's state change printed \(seen.map { String(format: "%.2f s", $0) } ?? "never") after `fwd up b` began")
            #expect(seen != nil, "\(FileSystem.read(out) ?? "")")

            let stop = try f.fwd("daemon", "--stop")
            #expect(stop.ok, "\(stop.stderr)")
            // Returned means stopped: no supervisor, no ssh, the state recorded.
            #expect(f.supervisorProcesses().isEmpty)
            #expect(f.sshProcesses().isEmpty)
            #expect(try Store(path: f.paths.database).tunnel("a")?.state == .down)
        }
    }

    /// A cold `fwd up` starts the supervisor, which says when it serves, and then hears its tunnels' outcome
    /// pushed: strace shows `fwd up` itself never sleeps in a loop, and waits in a handful of polls.
    @Test func coldUpWaitsWithoutPolling() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else {
            print("skipped coldUpWaitsWithoutPolling: needs strace (apt-get install strace)")
            return
        }
        try await FwdFixture.with { f in
            _ = try twoTunnels(f)
            try Self.coldUpTrace(f)
        }
    }

    private static func coldUpTrace(_ f: FwdFixture) throws {
        let trace = f.dir + "/up.trace"
        let argv = ["/usr/bin/strace", "-f", "-b", "execve", "-qq", "-o", trace,
                    "-e", "trace=execve,clone,clone3,fork,vfork,nanosleep,clock_nanosleep,poll,ppoll,select,pselect6",
                    FwdFixture.binary, "up", "a", "b"]
        let up = try f.run(argv)
        #expect(up.ok, "\(up.stderr)")
        let counts = syscalls(ofCaller: FileSystem.read(trace) ?? "")
        let listed = counts.keys.sorted().map { "\($0)=\(counts[$0] ?? 0)" }.joined(separator: " ")
        print("fwd up (cold) syscalls outside the supervisor: \(listed)")
        let sleeps = (counts["nanosleep"] ?? 0) + (counts["clock_nanosleep"] ?? 0)
        let waits = ["poll", "ppoll", "select", "pselect6"].reduce(0) { $0 + (counts[$1] ?? 0) }
        #expect(sleeps == 0, "\(listed)")
        #expect(waits > 0 && waits <= 20, "\(listed)")
    }

    /// Counts the syscalls of the traced `fwd up` and its threads, leaving out the supervisor it started (the
    /// process that executed `fwd daemon`) and everything that process created.
    static func syscalls(ofCaller trace: String) -> [String: Int] {
        var excluded: Set<Int> = []
        var counts: [String: Int] = [:]
        for line in trace.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let tid = Int(parts[0]) else { continue }
            let call = parts[1].trimmingCharacters(in: .whitespaces)
            // A call interrupted by another thread's line ends on a "<... NAME resumed>" line of its own.
            let resumed = call.hasPrefix("<... ")
            let name: String
            if resumed {
                name = String(call.dropFirst(5).prefix { $0 != " " })
            } else {
                guard let paren = call.firstIndex(of: "(") else { continue }
                name = String(call[..<paren])
            }
            if name == "execve", call.contains("\"daemon\"") { excluded.insert(tid) }
            if ["clone", "clone3", "fork", "vfork"].contains(name), excluded.contains(tid),
               let eq = call.range(of: " = ", options: .backwards), let child = Int(call[eq.upperBound...].prefix { $0.isNumber }) {
                excluded.insert(child)
            }
            if !resumed && !excluded.contains(tid) { counts[name, default: 0] += 1 }
        }
        return counts
    }
}
