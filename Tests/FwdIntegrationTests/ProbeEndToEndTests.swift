import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Health that holds on an ordinary server (issue 12), through the real binary against a real sshd.
@Suite(.serialized) struct ProbeEndToEndTests {
    /// An sshd that listens on 127.0.0.2 only, as many servers listen on their LAN address only: nothing on
    /// the server's 127.0.0.1:PORT, which the old SOCKS probe assumed.
    @Test func aDynamicTunnelIsUpWhenSSHDListensOnAnotherAddressOnly() async throws {
        try await FwdFixture.with(sshdAddress: "127.0.0.2") { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let socks = try LocalPort.free(), named = try LocalPort.free(), unreachable = try LocalPort.free()
            try f.write(config: """
            [tunnels.socks]
            host = "lab"
            dynamic = "\(socks)"

            [tunnels.named]
            host = "lab"
            dynamic = "\(named)"
            probe_target = "localhost:\(f.web.port)"

            [tunnels.wrong]
            host = "lab"
            dynamic = "\(unreachable)"
            probe_target = "127.0.0.1:\(try LocalPort.free())"
            """)
            let up = try f.fwd("up", "socks", "named", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            #expect(f.state("socks") == .up)
            #expect(f.state("named") == .up)

            // A SOCKS5 client that sends the name to the proxy loads the page.
            if let curl = Tool.path("curl") {
                let page = try f.run([curl, "-s", "--max-time", "5", "--socks5-hostname", "127.0.0.1:\(socks)",
                                      "http://localhost:\(f.web.port)/"])
                #expect(page.ok && page.stdout.contains(f.pageBody), "curl: \(page.stdout) \(page.stderr)")
            } else {
                print("SKIP curl --socks5-hostname: curl is not installed (apt-get install curl)")
            }
            #expect(await SOCKSClient.fetch(proxyPort: socks, targetHost: "localhost", targetPort: f.web.port)?.contains(f.pageBody) == true)

            // A probe_target the server cannot reach: degraded, naming it.
            _ = try f.fwd("up", "wrong", "--timeout", "3")
            #expect(f.waitForState("wrong", .degraded, timeout: 10) != nil)
            let status = try #require(try f.reportedStatus("wrong"))
            let error = status["last_error"] as? String ?? ""
            #expect(error.contains("could not connect to probe_target 127.0.0.1:"), "\(error)")
        }
    }

    /// After a master's login the supervisor sends the server ignore messages (MuxClient.nudge), so that no
    /// answer waits for a delayed ACK behind sshd's host-key notice. sshd at DEBUG3 logs each one it reads;
    /// ssh's own login and session send none (the control).
    @Test func theSupervisorNudgesTheServerAfterALogin() async throws {
        try await FwdFixture.with(sshdConfig: ["LogLevel DEBUG3"]) { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let ignored = "Received SSH2_MSG_IGNORE"
            let plain = try f.run(["ssh", "-F", f.userSSHConfig, "-o", "BatchMode=yes", "lab", "true"])
            #expect(plain.ok, "ssh lab true: \(plain.stderr)")
            #expect(!f.sshd.log().contains(ignored), "ssh itself sent an ignore message")
            let socks = try LocalPort.free()
            try f.write(config: """
            [tunnels.socks]
            host = "lab"
            dynamic = "\(socks)"
            """)
            let up = try f.fwd("up", "socks", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            // The nudges go out within 20 ms of the login; sshd's log may lag behind them.
            let deadline = Date().addingTimeInterval(5)
            var count = 0
            repeat {
                count = f.sshd.log().components(separatedBy: ignored).count - 1
                if count >= MuxClient.loginNudges.count { break }
                usleep(50_000)
            } while Date() < deadline
            #expect(count == MuxClient.loginNudges.count, "sshd read \(count) ignore messages")
            #expect(f.state("socks") == .up)
            #expect(await SOCKSClient.fetch(proxyPort: socks, targetHost: "localhost", targetPort: f.web.port)?.contains(f.pageBody) == true)
        }
    }

    /// A -R forward to a local HTTP server (it waits for the client to speak): up, with a latency that is a
    /// round trip through the server, not a timeout; to a refused port: degraded at once.
    @Test func remoteForwardsReadTheirTargetAtOnce() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let web = try LocalPort.free(), refused = try LocalPort.free()
            try f.write(config: """
            [tunnels.web]
            host = "lab"
            remote = "127.0.0.1:\(web):127.0.0.1:\(f.web.port)"

            [tunnels.down]
            host = "lab"
            remote = "127.0.0.1:\(refused):127.0.0.1:\(try LocalPort.free())"
            """)
            let start = Date()
            let up = try f.fwd("up", "web", "--timeout", "20")
            let took = Date().timeIntervalSince(start)
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            #expect(took < 2, "fwd up took \(took) s for a waiting HTTP target")
            let status = try #require(try f.reportedStatus("web"))
            let forward = try #require((status["forwards"] as? [[String: Any]])?.first)
            let latency = try #require(forward["probe_ms"] as? Double)
            #expect(latency > 0 && latency < 500, "probe_ms \(latency) is a round trip, not the 2000 ms timeout")
            #expect(f.fetchRetrying(port: web)?.body == f.pageBody)

            let downStart = Date()
            let refusedUp = try f.fwd("up", "down", "--timeout", "20")
            #expect(Date().timeIntervalSince(downStart) < 2, "`fwd up` says what failed and returns, not after its timeout")
            #expect(refusedUp.status == .exited(1) && refusedUp.stderr.contains("down: degraded"), "\(refusedUp.stderr)")
            #expect(f.waitForState("down", .degraded, timeout: 1) != nil)
            let error = try #require(try f.reportedStatus("down"))["last_error"] as? String ?? ""
            #expect(error.contains("local target") && error.contains("refused"), "\(error)")
        }
    }

    /// The server's listener removed behind the master's back: the probe sees it gone (not up) and fwd puts
    /// it back.
    @Test func aRemoteListenerRemovedOnTheServerIsNoticed() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let web = try LocalPort.free()
            try f.write(config: """
            [tunnels.web]
            host = "lab"
            remote = "127.0.0.1:\(web):127.0.0.1:\(f.web.port)"
            """)
            #expect(try f.fwd("up", "web", "--timeout", "20").ok)
            guard let ss = Tool.path("ss") else {
                print("SKIP listener removal: ss is not installed (apt-get install iproute2)")
                return
            }
            // ss -K destroys the server's listening socket (SOCK_DESTROY): sshd never hears of it, the master
            // neither; only a probe through the server can tell.
            let killed = try f.run([ss, "-K", "-t", "-l", "src", "127.0.0.1:\(web)"])
            guard killed.ok, !LocalPort.isAccepting(port: web, timeout: 0.5) else {
                print("SKIP listener removal: this kernel cannot destroy a listening socket (ss -K): \(killed.stderr)")
                return
            }
            var logs = ""
            for _ in 0..<50 where !logs.contains("a forward is missing") {
                logs = try f.fwd("logs", "web").stdout
                usleep(100_000)
            }
            #expect(logs.contains("a forward is missing"), "the probe reported the listener gone: \(logs)")
            // fwd cancels and adds the forward again, and the server listens again.
            #expect(f.fetchRetrying(port: web)?.body == f.pageBody)
            #expect(f.waitForState("web", .up, timeout: 10) != nil)
        }
    }

    /// A real SSH banner probed through a local forward, and the same port probed as PostgreSQL.
    @Test func anSSHBannerIsProbedThroughATunnel() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let ssh = try LocalPort.free(), wrong = try LocalPort.free()
            try f.write(config: """
            [tunnels.inner]
            host = "lab"
            local = "\(ssh):127.0.0.1:\(f.sshd.port)"
            probe = "ssh"

            [tunnels.notpg]
            host = "lab"
            local = "\(wrong):127.0.0.1:\(f.sshd.port)"
            probe = "postgres"
            """)
            let up = try f.fwd("up", "inner", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            _ = try f.fwd("up", "notpg", "--timeout", "3")
            #expect(f.waitForState("notpg", .degraded, timeout: 10) != nil)
            let error = try #require(try f.reportedStatus("notpg"))["last_error"] as? String ?? ""
            #expect(error.contains("127.0.0.1:\(wrong) answered, but not as PostgreSQL (it greets like SSH"), "\(error)")
        }
    }

    /// A real PostgreSQL (Debian's postgresql, a cluster in a temp dir run as `nobody`) through a local and a
    /// remote forward, each with the postgres probe.
    @Test func aRealPostgreSQLIsProbedThroughLocalAndRemoteForwards() async throws {
        guard let cluster = try PostgresCluster.start() else { return }
        defer { cluster.stop() }
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let local = try LocalPort.free(), remote = try LocalPort.free()
            try f.write(config: """
            [tunnels.db]
            host = "lab"
            local = "\(local):127.0.0.1:\(cluster.port)"
            probe = "postgres"

            [tunnels.laptop-db]
            host = "lab"
            remote = "127.0.0.1:\(remote):127.0.0.1:\(cluster.port)"
            probe = "postgres"
            """)
            let up = try f.fwd("up", "db", "laptop-db", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            #expect(f.state("db") == .up)
            #expect(f.state("laptop-db") == .up)

            // A hung PostgreSQL (SIGSTOP: the kernel still accepts) is no longer up.
            cluster.pause()
            defer { cluster.resume() }
            #expect(f.waitForState("db", .degraded, timeout: 15) != nil, "a stopped PostgreSQL reads degraded")
        }
    }
}

/// The tls probe's ClientHello against a real TLS stack (OpenSSL's s_server, TLS 1.3 and 1.2).
@Suite struct RealTLSProbeTests {
    @Test func openSSLAnswersTheClientHelloWithAServerHello() async throws {
        guard let openssl = Tool.path("openssl") else {
            print("SKIP real TLS probe: openssl is not installed (apt-get install openssl)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-tls-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (made, output) = try ChildProcess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                   "-nodes", "-days", "1", "-subj", "/CN=wiki.lan", "-keyout", dir + "/key.pem",
                                                   "-out", dir + "/cert.pem"])
        try #require(made == .exited(0), "\(output)")
        for version in ["-tls1_3", "-tls1_2"] {
            let port = try LocalPort.free()
            let server = try ChildProcess([openssl, "s_server", version, "-accept", "127.0.0.1:\(port)", "-cert", dir + "/cert.pem",
                                           "-key", dir + "/key.pem", "-quiet"], outputPath: dir + "/s_server.log")
            defer { server.kill() }
            let deadline = Date().addingTimeInterval(10)
            while !LocalPort.isAccepting(port: port, timeout: 0.2), Date() < deadline { usleep(50_000) }
            let spec = ForwardSpec(kind: .local, listen: .tcp(host: nil, port: port), target: .tcp(host: "wiki.lan", port: 443))
            let result = await HealthProbe(kind: .tls).run(spec)
            #expect(result.outcome == .up, "\(version): \(result.outcome) — \(FileSystem.read(dir + "/s_server.log") ?? "")")
        }
    }
}

enum Tool {
    static func path(_ name: String) -> String? {
        for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }
}

/// A throwaway PostgreSQL cluster: initdb into a temp dir owned by `nobody` (postgres refuses to run as
/// root), listening on 127.0.0.1 and a socket in that dir. nil, with a printed reason, when the server
/// binaries are missing.
final class PostgresCluster: @unchecked Sendable {
    let dir: String
    let port: Int
    private let child: ChildProcess

    static func binaries() -> String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        return versions.map { "\(base)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/postgres") }
    }

    static func start() throws -> PostgresCluster? {
        guard let bin = binaries() else {
            print("SKIP real PostgreSQL: no server in /usr/lib/postgresql (apt-get install postgresql)")
            return nil
        }
        guard let runuser = Tool.path("runuser") ?? Tool.path("su") else {
            print("SKIP real PostgreSQL: neither runuser nor su to run it as a non-root user")
            return nil
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let user = geteuid() == 0 ? "nobody" : nil
        if let user, let pw = getpwnam(user) { chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid) }
        func asUser(_ argv: [String]) -> [String] {
            guard let user else { return argv }
            return runuser.hasSuffix("runuser") ? [runuser, "-u", user, "--"] + argv
                : [runuser, "-s", "/bin/sh", user, "-c", argv.map { "'\($0)'" }.joined(separator: " ")]
        }
        let (status, output) = try ChildProcess.run(asUser(["\(bin)/initdb", "-D", dir + "/data", "-A", "trust", "-U", "fwd"]), timeout: 120)
        guard status == .exited(0) else {
            try? FileManager.default.removeItem(atPath: dir)
            throw ChildProcessError(description: "initdb failed: \(output)")
        }
        let port = try LocalPort.free()
        let child = try ChildProcess(asUser(["\(bin)/postgres", "-D", dir + "/data", "-p", String(port), "-k", dir,
                                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
                                     outputPath: dir + "/postgres.log")
        let cluster = PostgresCluster(dir: dir, port: port, child: child)
        let deadline = Date().addingTimeInterval(30)
        while !LocalPort.isAccepting(port: port, timeout: 0.5) {
            guard Date() < deadline, child.isRunning else {
                let log = FileSystem.read(dir + "/postgres.log") ?? ""
                cluster.stop()
                throw ChildProcessError(description: "postgres did not start: \(log)")
            }
            usleep(100_000)
        }
        return cluster
    }

    private init(dir: String, port: Int, child: ChildProcess) {
        self.dir = dir
        self.port = port
        self.child = child
    }

    /// The postmaster and its children: with runuser, the postmaster is runuser's child.
    private func postmaster() -> Int32? {
        let pidFile = FileSystem.read(dir + "/data/postmaster.pid")?.split(separator: "\n").first
        return pidFile.flatMap { Int32($0) }
    }

    func pause() {
        guard let pid = postmaster() else { return }
        for p in [pid] + ProcessTable.children(of: pid) { kill(p, SIGSTOP) }
    }

    func resume() {
        guard let pid = postmaster() else { return }
        for p in [pid] + ProcessTable.children(of: pid) { kill(p, SIGCONT) }
    }

    func stop() {
        resume()
        if let pid = postmaster() { kill(pid, SIGINT) }
        if child.waitExit(timeout: 10) == nil { child.kill() }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
