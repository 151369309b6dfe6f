import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `fwd doctor` on a clean setup, and on each problem a user can run into.
@Suite(.serialized) struct DoctorTests {
    /// A setup with nothing wrong: a tunnel on a free port, fwd's Include installed, private state.
    func cleanSetup(_ f: FwdFixture) throws -> Int {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let port = try LocalPort.free()
        try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\nprobe = \"http\"\n")
        let install = try f.fwd("config", "install")
        #expect(install.ok, "\(install.stderr)")
        return port
    }

    func findings(_ run: FwdRun) throws -> [[String: Any]] {
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)\(run.stderr)")
        return try #require(report["findings"] as? [[String: Any]])
    }

    func problems(_ run: FwdRun) throws -> [[String: Any]] {
        try findings(run).filter { $0["status"] as? String == "problem" }
    }

    @Test func aCleanSetupPasses() async throws {
        try await FwdFixture.with { f in
            let port = try cleanSetup(f)
            let plain = try f.fwd("doctor")
            #expect(plain.ok, "\(plain.stdout)\(plain.stderr)")
            #expect(plain.stdout.contains("everything looks fine"), "\(plain.stdout)")

            let verbose = try f.fwd("doctor", "--verbose")
            for check in ["ssh: OpenSSH_", "config:", "include:", "state-permissions:", "control-path:", "stale-socket:", "port:", "supervisor:"] {
                #expect(verbose.stdout.contains(check), "--verbose lacks \(check):\n\(verbose.stdout)")
            }

            let json = try f.fwd("doctor", "--json")
            #expect(json.ok)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(report["ok"] as? Bool == true)
            for finding in try findings(json) {
                #expect(finding["check"] is String && finding["status"] is String && finding["message"] is String)
            }

            // A tunnel that is up holds its port through fwd's own master: that is not a conflict, and the
            // master's socket is live, not stale.
            #expect(try f.fwd("up", "wiki").ok)
            let up = try f.fwd("doctor", "--json")
            #expect(up.ok, "\(up.stdout)")
            #expect(try problems(up).isEmpty)
            #expect(try findings(up).contains { ($0["message"] as? String)?.contains("1 master answers") == true }, "\(up.stdout)")
            #expect(LocalPort.isAccepting(port: port))
        }
    }

    @Test func findsAMissingInclude() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            #expect(try f.fwd("config", "uninstall").ok)
            let run = try f.fwd("doctor")
            #expect(run.status == .exited(1))
            #expect(run.stdout.contains("include: \(f.userSSHConfig) does not include"), "\(run.stdout)")
            #expect(run.stdout.contains("fix: `fwd config install`"))
            #expect(try problems(try f.fwd("doctor", "--json")).map { $0["check"] as? String } == ["include"])
        }
    }

    @Test func findsAnIncludeThatOnlyAppliesInsideAHostBlock() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            let text = try #require(FileSystem.read(f.userSSHConfig))
            let include = SSHConfigFiles.includeLine(paths: f.paths)
            try f.write(userSSHConfig: text.replacingOccurrences(of: include + "\n", with: "") + include + "\n")
            let problems = try problems(try f.fwd("doctor", "--json"))
            #expect(problems.map { $0["check"] as? String } == ["include"])
            #expect((problems.first?["message"] as? String)?.contains("after a Host or Match line") == true)
        }
    }

    @Test func findsLoosePermissionsInTheStateDirectory() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            chmod(f.stateDir, 0o755)
            chmod(f.paths.fragment, 0o644)
            let run = try f.fwd("doctor", "--json")
            #expect(run.status == .exited(1))
            let problems = try problems(run)
            #expect(problems.count == 2)
            #expect(problems.allSatisfy { $0["check"] as? String == "state-permissions" })
            #expect(problems.contains { ($0["fix"] as? String)?.contains("chmod 700") == true })
            #expect(problems.contains { ($0["message"] as? String)?.contains(f.paths.fragment) == true })
            // Doctor only looks: the modes are still wrong afterwards.
            #expect(FileSystem.mode(of: f.stateDir) == 0o755)
        }
    }

    @Test func findsAStaleControlSocket() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            // What a SIGKILLed master leaves: a socket file nobody listens on.
            let stale = f.paths.controlDirectory + "/" + String(repeating: "ab", count: 20)
            try TestListener.deadSocket(at: stale)
            let run = try f.fwd("doctor")
            #expect(run.status == .exited(1))
            #expect(run.stdout.contains("stale-socket: \(stale) is a control socket no master answers"), "\(run.stdout)")
            #expect(run.stdout.contains("fix: `rm \(stale)`"))
        }
    }

    @Test func findsAPortHeldByAnotherProgram() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            // The fixture's web server listens on a port; make the tunnel want that one.
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(f.web.port):127.0.0.1:80\"\n")
            let run = try f.fwd("doctor", "--json")
            #expect(run.status == .exited(1))
            let problems = try problems(run)
            #expect(problems.map { $0["check"] as? String } == ["port"])
            let message = problems.first?["message"] as? String ?? ""
            #expect(message.contains("port \(f.web.port) of tunnel wiki"), "\(message)")
            #expect(message.contains("(pid \(getpid()))"), "the holder is this test process: \(message)")
        }
    }

    @Test func findsATunnelWhoseTargetStoppedAnswering() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let target = try TinyHTTPServer(body: "target")
            let port = try LocalPort.free()
            try f.write(config: "[tunnels.app]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(target.port)\"\nprobe = \"http\"\n")
            #expect(try f.fwd("config", "install").ok)
            #expect(try f.fwd("up", "app").ok)
            target.stop()
            #expect(f.waitForState("app", .degraded, timeout: 10) != nil)
            let run = try f.fwd("doctor")
            #expect(run.status == .exited(1))
            #expect(run.stdout.contains("tunnel: app is connected but its probe fails"), "\(run.stdout)")
            #expect(run.stdout.contains("AllowTcpForwarding"))
        }
    }

    @Test func findsABrokenConfigAndAMissingSupervisor() async throws {
        try await FwdFixture.with { f in
            _ = try cleanSetup(f)
            #expect(try f.fwd("up", "wiki").ok)
            #expect(try f.fwd("daemon", "--stop").ok)
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlcoal = \"1:a:1\"\n")
            let run = try f.fwd("doctor", "--json")
            #expect(run.status == .exited(1))
            let problems = try problems(run)
            #expect(Set(problems.compactMap { $0["check"] as? String }) == ["config", "supervisor"])
            #expect(problems.contains { ($0["message"] as? String)?.contains("\(f.configPath):3:1: unknown key \"lcoal\"") == true })
        }
    }
}
