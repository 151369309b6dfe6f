import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// The output and exit status of one run of the real `fwd` binary.
struct FwdRun {
    var status: ChildExit
    var stdout: String
    var stderr: String
    var ok: Bool { status == .exited(0) }
}

/// A temporary world for one test: its own fwd config, state dir and "user" ssh_config, a private sshd and
/// an HTTP server. Everything is removed and stopped by `with`, even when the test throws.
final class FwdFixture: @unchecked Sendable {
    let dir: String
    let sshd: LabSSHD
    let web: TinyHTTPServer
    let pageBody = "<h1>intranet wiki</h1>"

    var configPath: String { dir + "/config/fwd.toml" }
    var stateDir: String { dir + "/state" }
    var userSSHConfig: String { dir + "/home/.ssh/config" }

    /// The package root, found from this file, so tests run the binary `swift build` produced.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    static var binary: String {
        if let override = ProcessInfo.processInfo.environment["FWD_BIN"], !override.isEmpty { return override }
        return packageRoot + "/.build/debug/fwd"
    }

    private init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-it-\(UUID().uuidString.prefix(8))").path
        try FileSystem.makePrivateDirectory(dir + "/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
        sshd = try LabSSHD(dir: dir + "/sshd")
        web = try TinyHTTPServer(body: pageBody)
    }

    static func with<T>(_ body: (FwdFixture) async throws -> T) async throws -> T {
        let fixture = try FwdFixture()
        defer { fixture.tearDown() }
        try fixture.sshd.start()
        return try await body(fixture)
    }

    private func tearDown() {
        web.stop()
        sshd.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = configPath
        env["FWD_STATE_DIR"] = stateDir
        env["FWD_SSH_CONFIG"] = userSSHConfig
        env["FWD_TEMPLATES"] = Self.packageRoot + "/templates"
        env["NO_COLOR"] = "1"
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

    func fwd(arguments: [String], timeout: Double = 60) throws -> FwdRun {
        let id = UUID().uuidString.prefix(8)
        let out = "\(dir)/run-\(id).out", err = "\(dir)/run-\(id).err"
        // ChildProcess sends stdout and stderr to one file; run through sh to keep them apart.
        let script = "exec \"$0\" \"$@\" 2>\"\(err)\""
        let child = try ChildProcess(["/bin/sh", "-c", script, Self.binary] + arguments, outputPath: out, environment: environment)
        guard let status = child.waitExit(timeout: timeout) else {
            child.kill()
            throw ChildProcessError(description: "fwd \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        return FwdRun(status: status, stdout: FileSystem.read(out) ?? "", stderr: FileSystem.read(err) ?? "")
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
