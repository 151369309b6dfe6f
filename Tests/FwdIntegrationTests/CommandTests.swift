import Foundation
@testable import FwdCore
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
            #expect(f.fetch(port: port, timeout: 15)?.body == f.pageBody)
            #expect(f.waitForState("wiki", "up") != nil)
            #expect(try f.fwd("daemon").stderr.contains("already runs"), "a second supervisor must refuse")
            run.signal(SIGINT)
            #expect(run.waitExit(timeout: 10) == .exited(0))
            #expect(f.sshProcesses().isEmpty)
            #expect(!LocalPort.isAccepting(port: port))
            let output = FileSystem.read(f.dir + "/run.out") ?? ""
            #expect(output.contains("wiki  state starting → up"), "\(output)")
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
            #expect(f.waitForState("wiki", "up", timeout: 15) != nil)
            #expect(try f.fwd("down", "wiki").ok)
            let logs = try f.fwd("logs", "wiki")
            #expect(logs.ok)
            for needle in ["desired", "state starting → up", "restart:", "state up → down", "--- ssh messages for lab"] {
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

    /// DESIGN.md: Foundation.Process on Linux reports no child's exit while one ssh runs. fwd watches ssh through
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
