import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `fwd up` and the supervisor against a real sshd, through the real binary.
@Suite(.serialized) struct SupervisorTests {
    func labConfig(_ f: FwdFixture) throws {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
    }

    /// The tunnel blocks copy what `ssh -G` says for the host; an edit in a file the user's ssh_config includes
    /// is noticed at the next request, as an edit of the main file is.
    @Test func editsInIncludedSSHConfigReachTheTunnelBlocks() async throws {
        try await FwdFixture.with { f in
            let included = f.dir + "/home/.ssh/lab.conf"
            try FileSystem.writeAtomically(f.sshd.clientConfigBlock(alias: "lab"), to: included)
            try f.write(userSSHConfig: "Include \(included)\n")
            let p1 = try LocalPort.free(), p2 = try LocalPort.free()
            try f.write(config: """
            [tunnels.a]
            host = "lab"
            local = "\(p1):127.0.0.1:\(f.web.port)"
            [tunnels.b]
            host = "lab"
            local = "\(p2):127.0.0.1:\(f.web.port)"
            """)
            #expect(try f.fwd("up", "a").ok)
            let before = FileSystem.read(f.paths.fragment) ?? ""
            #expect(before.contains("Port \(f.sshd.port)") && !before.contains("Compression yes"), "\(before)")
            try FileSystem.writeAtomically(f.sshd.clientConfigBlock(alias: "lab").replacingOccurrences(of: "    BatchMode yes\n", with: "    BatchMode yes\n    Compression yes\n"), to: included)
            #expect(try f.fwd("up", "b").ok)
            let after = FileSystem.read(f.paths.fragment) ?? ""
            #expect(after.contains("    Compression yes\n"), "\(after)")
        }
    }

    @Test func localDynamicAndRemoteForwardsShareOneMaster() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            let laptop = try TinyHTTPServer(body: "laptop service")
            defer { laptop.stop() }
            let wikiPort = try LocalPort.free(), socksPort = try LocalPort.free()
            try f.write(config: """
            [tunnels.wiki]
            host = "lab"
            local = "\(wikiPort):127.0.0.1:\(f.web.port)"
            probe = "http"

            [tunnels.socks]
            host = "lab"
            dynamic = "\(socksPort)"

            [tunnels.laptop]
            host = "lab"
            remote = "127.0.0.1:0:127.0.0.1:\(laptop.port)"
            """)
            let up = try f.fwd("up", "wiki")
            #expect(up.ok, "\(up.stderr)")
            #expect(f.fetchRetrying(port: wikiPort)?.body == f.pageBody)
            let firstMasters = f.masters()
            #expect(firstMasters.count == 1)
            let sessionsBefore = f.sshd.log().components(separatedBy: "Accepted publickey").count

            // Two more tunnels on the same host ride the same master: no new connection reaches sshd.
            let more = try f.fwd("up", "socks", "laptop")
            #expect(more.ok, "\(more.stderr)")
            #expect(f.masters() == firstMasters)
            #expect(f.sshd.log().components(separatedBy: "Accepted publickey").count == sessionsBefore)

            // A browser-style SOCKS5 client reaches the wiki through the -D port.
            let viaSocks = await SOCKSClient.fetch(proxyPort: socksPort, targetHost: "127.0.0.1", targetPort: f.web.port)
            #expect(viaSocks?.contains(f.pageBody) == true)

            // The -R 0 forward: the allocated port is recorded, and the laptop's service answers on the server.
            let laptopStatus = try #require(try f.reportedStatus("laptop"))
            let forwards = try #require(laptopStatus["forwards"] as? [[String: Any]])
            let allocated = try #require(forwards.first?["allocated_port"] as? Int)
            #expect(allocated > 0)
            #expect(f.fetchRetrying(port: allocated)?.body == "laptop service")
            #expect(try f.fwd("status").stdout.contains("(port \(allocated))"))

            let json = try #require(try f.reportedStatus("wiki"))
            for key in ["name", "state", "host", "forwards", "pid", "since", "restarts", "probe_ms", "last_error"] {
                #expect(json.keys.contains(key), "status --json lacks \(key)")
            }
            #expect(json["state"] as? String == "up")
            #expect(json["pid"] as? Int == Int(firstMasters[0]))

            // Down one tunnel: its port closes, the master stays; down the rest: the master exits.
            #expect(try f.fwd("down", "wiki").ok)
            #expect(!LocalPort.isAccepting(port: wikiPort))
            #expect(f.masters() == firstMasters)
            #expect(try f.fwd("down", "--all").ok)
            #expect(f.masters().isEmpty)
        }
    }

    @Test func sshdRestartBringsTheTunnelBackByItself() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n")
            #expect(try f.fwd("up", "wiki").ok)
            #expect(f.fetchRetrying(port: port) != nil)

            f.sshd.kill()
            #expect(f.waitForState("wiki", .starting, timeout: 10) != nil)
            try await Task.sleep(for: .seconds(1.5))
            try f.sshd.start()
            let listening = Date()
            var recovered: Double?
            while Date().timeIntervalSince(listening) < 15 {
                if (try? HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: 1))?.status == 200 {
                    recovered = Date().timeIntervalSince(listening)
                    break
                }
                usleep(5_000)
            }
            let seconds = try #require(recovered, "the tunnel did not come back within 15 s")
            print("fwd recovery: page loads \(String(format: "%.3f", seconds)) s after sshd listens again")
            #expect(seconds < 5)
            #expect(f.waitForState("wiki", .up, timeout: 15) != nil)
            #expect(try f.reportedStatus("wiki")?["restarts"] as? Int == 1)
            #expect(f.masters().count == 1)
        }
    }

    @Test func wrongKeyFailsOnceWithAdviceAndNoRetryStorm() async throws {
        try await FwdFixture.with { f in
            let wrongKey = f.dir + "/wrong_key"
            #expect(try ChildProcess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrongKey]).exit == .exited(0))
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab").replacingOccurrences(of: f.sshd.clientKey, with: wrongKey))
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(try LocalPort.free()):127.0.0.1:\(f.web.port)\"\n")
            let started = Date()
            let up = try f.fwd("up", "wiki", "--timeout", "20")
            #expect(!up.ok)
            #expect(Date().timeIntervalSince(started) < 10, "a fatal failure should end `fwd up` at once")
            #expect(up.stderr.contains("wiki: failed"))
            #expect(up.stderr.contains("Permission denied"))
            #expect(up.stderr.contains("authentication failed"))
            try await Task.sleep(for: .seconds(4))
            let attempts = f.sshd.log().components(separatedBy: "Connection from 127.0.0.1").count - 1
            #expect(attempts <= 2, "sshd saw \(attempts) connections: fwd retried a fatal failure")
            #expect(f.state("wiki") == .failed)
            #expect(f.masters().isEmpty)
        }
    }

    @Test func takenLocalPortFailsOnlyThatTunnel() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            let squatter = try TinyHTTPServer(body: "someone else")
            defer { squatter.stop() }
            let freePort = try LocalPort.free()
            try f.write(config: """
            [tunnels.clash]
            host = "lab"
            local = "\(squatter.port):127.0.0.1:\(f.web.port)"

            [tunnels.fine]
            host = "lab"
            local = "\(freePort):127.0.0.1:\(f.web.port)"
            """)
            let up = try f.fwd("up", "clash", "fine")
            #expect(!up.ok)
            #expect(up.stderr.contains("clash: starting"), "checked again until the port frees: \(up.stderr)")
            #expect(up.stderr.contains("local port \(squatter.port) is already in use"))
            #expect(up.stderr.contains("pid \(getpid())"), "names the process holding the port: \(up.stderr)")
            #expect(f.state("fine") == .up)
            #expect(f.fetchRetrying(port: freePort)?.body == f.pageBody)
            #expect(try HTTPGet.fetch(host: "127.0.0.1", port: squatter.port).body == "someone else")
        }
    }

    @Test func targetDownIsDegradedWithoutReconnecting() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            var target = try TinyHTTPServer(body: "target")
            let targetPort = target.port
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.app]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(targetPort)\"\nprobe = \"http\"\n")
            #expect(try f.fwd("up", "app").ok)
            let master = f.masters()
            #expect(master.count == 1)

            target.stop()
            #expect(f.waitForState("app", .degraded, timeout: 10) != nil)
            #expect(f.masters() == master)
            #expect(try f.reportedStatus("app")?["restarts"] as? Int == 0)

            target = try TinyHTTPServer(port: targetPort, body: "target again")
            defer { target.stop() }
            #expect(f.waitForState("app", .up, timeout: 10) != nil)
            #expect(f.masters() == master)
            let check = try f.fwd("check", "app")
            #expect(check.ok, "\(check.stdout)\(check.stderr)")
        }
    }

    @Test func sigtermLeavesNoSSHAndSigkillLeavesNoDuplicateMaster() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\n")
            #expect(try f.fwd("up", "wiki").ok)
            var daemon = f.supervisorProcesses()
            try #require(daemon.count == 1)
            #expect(f.sshProcesses().count == 1)

            kill(daemon[0], SIGTERM)
            f.waitUntil(timeout: 10, every: 0.05) { f.supervisorProcesses().isEmpty }
            #expect(f.supervisorProcesses().isEmpty)
            #expect(f.sshProcesses().isEmpty, "ssh left behind after SIGTERM: \(f.sshProcesses())")

            // The tunnel is still wanted: the next `fwd up` starts a supervisor that brings it back.
            #expect(try f.fwd("up", "wiki").ok)
            daemon = f.supervisorProcesses()
            let orphan = f.masters()
            try #require(daemon.count == 1 && orphan.count == 1)
            kill(daemon[0], SIGKILL)
            f.waitUntil(timeout: 5, every: 0.05) { f.supervisorProcesses().isEmpty }
            #expect(f.masters() == orphan, "the master outlives a SIGKILLed supervisor")

            let again = try f.fwd("up", "wiki")
            #expect(again.ok, "\(again.stderr)")
            let masters = f.masters()
            #expect(masters.count == 1)
            #expect(!masters.contains(orphan[0]), "the old master was reaped")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
        }
    }

    @Test func twentyConcurrentUpsMakeOneSupervisorAndOneMaster() async throws {
        try await FwdFixture.with { f in
            try labConfig(f)
            var config = ""
            var ports: [Int] = []
            for i in 0..<20 {
                let port = try LocalPort.free()
                ports.append(port)
                config += "[tunnels.t\(i)]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n\n"
            }
            try f.write(config: config)
            let results = try await withThrowingTaskGroup(of: FwdRun.self) { group in
                for i in 0..<20 { group.addTask { try f.fwd("up", "t\(i)", "--timeout", "60", timeout: 90) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let failures = results.filter { !$0.ok }.map(\.stderr)
            #expect(failures.isEmpty, "\(failures)")
            #expect(f.supervisorProcesses().count == 1)
            #expect(f.masters().count == 1)
            for port in ports { #expect(LocalPort.isAccepting(port: port)) }
            let statuses = try JSONSerialization.jsonObject(with: Data(try f.fwd("status", "--json").stdout.utf8)) as? [[String: Any]]
            #expect(statuses?.count == 20)
            #expect(statuses?.allSatisfy { $0["state"] as? String == "up" } == true)
        }
    }
}
