import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `fwd run`, `fwd logs`, `fwd demo` and how fwd watches its ssh children.
@Suite(.serialized) struct CommandTests {
    @Test func runSupervisesInTheForegroundAndCtrlCTakesEverythingDown() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n")
            let run = try ChildProcess([FwdFixture.binary, "run", "wiki"], outputPath: f.dir + "/run.out", environment: f.environment)
            #expect(f.fetchRetrying(port: port, timeout: 15)?.body == f.pageBody)
            #expect(f.waitForState("wiki", .up, timeout: 15) != nil)
            #expect(try f.fwd("daemon").stderr.contains("already runs"), "a second supervisor must refuse")
            // A config broken while `fwd run` runs must not keep its tunnels wanted after it ends (a later
            // `fwd daemon` would bring them up).
            try f.write(config: "[tunnels.wiki\n")
            run.signal(SIGINT)
            #expect(run.waitExit(timeout: 10) == .exited(0))
            let output = FileSystem.read(f.dir + "/run.out") ?? ""
            let row = try Store(path: f.paths.database).tunnel("wiki")
            #expect(row?.desired == .down, "\(output)")
            #expect(row?.forwards.map(\.kind) == [.local], "the row keeps its forwards for `fwd status`")
            #expect(f.sshProcesses().isEmpty)
            #expect(!LocalPort.isAccepting(port: port))
            // The events of the shutdown itself are printed before `fwd run` exits.
            for needle in ["wiki  state starting → up", "wiki  state up → down", "wiki  wanted down"] {
                #expect(output.contains(needle), "\(output)")
            }
        }
    }

    @Test func logsShowTransitionsRestartsAndSSHMessages() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\n")
            #expect(try f.fwd("up", "wiki").ok)
            f.sshd.kill()
            try f.sshd.start()
            #expect(f.waitForState("wiki", .up, timeout: 15) != nil)
            #expect(try f.fwd("down", "wiki").ok)
            let logs = try f.fwd("logs", "wiki")
            #expect(logs.ok)
            for needle in ["wanted up", "state starting → up", "restart:", "state up → down", "--- ssh messages for lab"] {
                #expect(logs.stdout.contains(needle), "fwd logs lacks \(needle):\n\(logs.stdout)")
            }
        }
    }

    @Test func demoRunsEndToEndAndCleansUp() async throws {
        try await FwdFixture.with { f in
            let before = f.processes { $0.first == LabSSHD.sshdPath }.count
            let demo = try f.fwd(arguments: ["demo"], timeout: 120)
            #expect(demo.ok, "\(demo.stdout)\n\(demo.stderr)")
            for needle in ["intranet-wiki: up", "socks: up", "laptop-web: up", "→ HTTP 200", "Intranet wiki", "remote ok", "$ fwd status"] {
                #expect(demo.stdout.contains(needle), "demo output lacks \(needle)")
            }
            #expect(f.processes { $0.first == LabSSHD.sshdPath }.count == before, "the demo's sshd is still running")
        }
    }

    /// docs/architecture.md, "Child processes": Foundation.Process on Linux reports no child's exit while one ssh runs. fwd watches ssh through
    /// swift-subprocess; this catches a regression to the stall.
    @Test(.timeLimit(.minutes(1))) func childExitsAreSeenOnTimeWhileAMasterRuns() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let socket = f.dir + "/m.sock"
            let master = try await ControlMaster.spawn(
                SSHCommand(executable: "ssh", arguments: ["-F", f.userSSHConfig, "-N", "-M", "-S", socket, "lab"]),
                socket: socket, logPath: f.dir + "/master.log")
            defer { Task { await master.stop() } }
            let start = Date()
            async let one = ControlMaster.spawn(SSHCommand(executable: "ssh", arguments: ["-F", f.userSSHConfig, "-S", "none", "lab", "sleep 1"]),
                                                socket: "", logPath: f.dir + "/one.log")
            async let two = ControlMaster.spawn(SSHCommand(executable: "ssh", arguments: ["-F", f.userSSHConfig, "-S", "none", "lab", "sleep 2"]),
                                                socket: "", logPath: f.dir + "/two.log")
            let (a, b) = try await (one, two)
            async let exitOne: Int32 = a.waitExit()
            let firstStatus = await exitOne
            let first = Date().timeIntervalSince(start)
            let secondStatus = await b.waitExit()
            let second = Date().timeIntervalSince(start)
            #expect(firstStatus == 0 && secondStatus == 0)
            print("child exits seen after \(String(format: "%.2f", first)) s and \(String(format: "%.2f", second)) s while a master runs")
            // With the stall, neither exit would be reported while the master runs (here: never). Each is seen
            // on its own, a second apart, while the master still lives.
            #expect(first < 10, "the 1 s child was reported only after \(first) s")
            #expect(second - first > 0.5, "both exits were reported together")
            #expect(ProcessTable.isAlive(master.pid))
        }
    }
}

/// `fwd ssh`: a session with fwd's config, riding the master, with agent forwarding when the host asks.
@Suite(.serialized) struct SessionTests {
    func officeConfig(_ f: FwdFixture, forwardAgent: Bool) throws {
        try f.write(userSSHConfig: "Match host 127.0.0.1\n    UserKnownHostsFile \(f.sshd.knownHosts)\n")
        try f.write(config: """
        [hosts.office]
        hostname = "127.0.0.1"
        port = \(f.sshd.port)
        user = "\(f.sshd.user)"
        identity = "\(f.sshd.clientKey)"
        forward_agent = \(forwardAgent)

        [tunnels.wiki]
        host = "office"
        local = "\(try LocalPort.free()):127.0.0.1:\(f.web.port)"
        """)
    }

    @Test func sessionRidesTheMaster() async throws {
        try await FwdFixture.with { f in
            try officeConfig(f, forwardAgent: false)
            #expect(try f.fwd("up", "wiki").ok)
            let sessions = f.sshd.log().components(separatedBy: "Accepted publickey").count
            let run = try f.fwd("ssh", "office", "--", "echo", "hello-from-$(hostname)")
            #expect(run.ok, "\(run.stderr)")
            #expect(run.stdout.hasPrefix("hello-from-"))
            #expect(f.sshd.log().components(separatedBy: "Accepted publickey").count == sessions, "fwd ssh opened a new connection")
        }
    }

    @Test func agentForwardingWhenTheHostAsks() async throws {
        try await FwdFixture.with { f in
            let agentSocket = f.dir + "/agent.sock"
            let agent = try ChildProcess(["ssh-agent", "-D", "-a", agentSocket], outputPath: f.dir + "/agent.log")
            defer { agent.kill() }
            for _ in 0..<100 where !FileSystem.exists(agentSocket) { usleep(20_000) }
            for forwardAgent in [true, false] {
                try officeConfig(f, forwardAgent: forwardAgent)
                var env = f.environment
                env["SSH_AUTH_SOCK"] = agentSocket
                let out = f.dir + "/session-\(forwardAgent).out"
                let session = try ChildProcess([FwdFixture.binary, "ssh", "office", "--", "echo agent=${SSH_AUTH_SOCK:-none}"],
                                               outputPath: out, environment: env)
                #expect(session.waitExit(timeout: 20) == .exited(0), "\(FileSystem.read(out) ?? "")")
                let text = FileSystem.read(out) ?? ""
                #expect(text.contains("agent=") && text.contains("agent=none") != forwardAgent, "forward_agent = \(forwardAgent): \(text)")
            }
        }
    }
}
