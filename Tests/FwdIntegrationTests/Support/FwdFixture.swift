import Foundation
@testable import FwdCore
import FwdLab
@_exported import FwdTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A temporary world for one test: its own fwd config, state dir and "user" ssh_config, a private sshd and
/// an HTTP server. Everything is removed and stopped by `with`, even when the test throws.
final class FwdFixture: FwdWorld, @unchecked Sendable {
    let dir: String
    let sshd: LabSSHD
    let web: TinyHTTPServer
    let pageBody = "<h1>intranet wiki</h1>"

    var configPath: String { dir + "/config/fwd.toml" }
    var stateDir: String { dir + "/state" }
    var userSSHConfig: String { dir + "/home/.ssh/config" }

    static var binary: String { FwdBinary.path }

    private init(sshdAddress: String, sshdConfig: [String]) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-it-\(UUID().uuidString.prefix(8))").path
        try FileSystem.makePrivateDirectory(dir + "/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
        sshd = try LabSSHD(dir: dir + "/sshd", address: sshdAddress, extraConfig: sshdConfig)
        web = try TinyHTTPServer(body: pageBody)
    }

    /// `sshdAddress`: where the private sshd listens, and nowhere else. `sshdConfig`: sshd_config lines that
    /// come before the lab's own (sshd keeps the first value it reads).
    static func with<T>(sshdAddress: String = "127.0.0.1", sshdConfig: [String] = [],
                        _ body: (FwdFixture) async throws -> T) async throws -> T {
        let fixture = try FwdFixture(sshdAddress: sshdAddress, sshdConfig: sshdConfig)
        defer { fixture.tearDown() }
        try fixture.sshd.start()
        return try await body(fixture)
    }

    private func tearDown() {
        // Whatever a test left running: the supervisor, then any ssh using this fixture's sockets.
        for pid in supervisorProcesses() { ProcessTable.terminate(pid) }
        for pid in sshProcesses() { ProcessTable.terminate(pid, grace: 0.5) }
        web.stop()
        sshd.stop()
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: paths.controlDirectory)
    }

    var paths: FwdPaths {
        FwdPaths(config: configPath, stateDirectory: stateDir, userSSHConfig: userSSHConfig)
    }

    /// Live processes whose command line contains `needle`.
    /// The state of a tunnel as `fwd status --json` reports it.
    func status(_ name: String) throws -> [String: Any]? {
        let run = try fwd("status", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]]
        return rows?.first { $0["name"] as? String == name }
    }

    func state(_ name: String) -> String? {
        (try? status(name))?["state"] as? String
    }

    /// Polls until `name` reaches `state`; returns the seconds it took, or nil on timeout.
    @discardableResult
    func waitForState(_ name: String, _ state: String, timeout: Double = 15) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if self.state(name) == state { return Date().timeIntervalSince(start) }
            usleep(100_000)
        }
        return nil
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = configPath
        env["FWD_STATE_DIR"] = stateDir
        env["FWD_SSH_CONFIG"] = userSSHConfig
        env["FWD_TEMPLATES"] = FwdBinary.packageRoot + "/templates"
        env["NO_COLOR"] = "1"
        env["FWD_PROBE_INTERVAL"] = "0.5"
        return env
    }

    func write(config: String) throws {
        try FileSystem.writeAtomically(config, to: configPath)
    }

    func write(userSSHConfig text: String) throws {
        try FileSystem.writeAtomically(text, to: userSSHConfig)
    }

    /// Runs `fwd ARGS` with this fixture's environment and waits for it.
    @discardableResult
    func fwd(_ arguments: String..., timeout: Double = 60) throws -> FwdRun {
        try fwd(arguments: arguments, timeout: timeout)
    }

    func fwd(arguments: [String], environment changes: [String: String?] = [:], timeout: Double = 60) throws -> FwdRun {
        try run([Self.binary] + arguments, environment: changes, timeout: timeout)
    }

    /// Runs any command with this fixture's environment, changed by `changes` (a nil value removes a variable),
    /// and waits for it.
    func run(_ argv: [String], environment changes: [String: String?] = [:], timeout: Double = 60) throws -> FwdRun {
        let id = UUID().uuidString.prefix(8)
        let out = "\(dir)/run-\(id).out", err = "\(dir)/run-\(id).err"
        // ChildProcess sends stdout and stderr to one file; run through sh to keep them apart.
        let script = "exec \"$0\" \"$@\" 2>\"\(err)\""
        let child = try ChildProcess(["/bin/sh", "-c", script] + argv, outputPath: out, environment: environment(changes))
        guard let status = child.waitExit(timeout: timeout) else {
            child.kill()
            throw ChildProcessError(description: "\(argv.joined(separator: " ")) did not finish in \(timeout) s")
        }
        return FwdRun(status: status, stdout: FileSystem.read(out) ?? "", stderr: FileSystem.read(err) ?? "")
    }

    func environment(_ changes: [String: String?]) -> [String: String] {
        var env = environment
        for (key, value) in changes { env[key] = value }
        return env
    }

    /// Waits until `port` on 127.0.0.1 accepts connections.
    func waitForPort(_ port: Int, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if LocalPort.isAccepting(port: port, timeout: 0.5) { return true }
            usleep(50_000)
        }
        return false
    }

    /// Fetches through a forwarded port, retrying briefly while the forward comes up.
    func fetch(port: Int, timeout: Double = 10) -> HTTPResponse? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let r = try? HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: 3) { return r }
            usleep(100_000)
        }
        return nil
    }
}
