import Foundation
@testable import FwdCore
import FwdLab
@_exported import FwdTestSupport

/// A temporary world for one test: its own fwd config, state dir and "user" ssh_config, a private sshd and
/// an HTTP server. Everything is removed and stopped by `with`, even when the test throws. Running fwd,
/// status, waiting and fetching come from `FwdWorld`; fwd runs here, and states are read as `fwd status
/// --json` reports them.
final class FwdFixture: FwdWorld, @unchecked Sendable {
    let dir: String
    let sshd: LabSSHD
    let web: TinyHTTPServer
    let pageBody = "<h1>intranet wiki</h1>"
    let probeInterval: Double? = 0.5
    /// Each reading runs `fwd status`.
    let statePollInterval = 0.1

    private init(sshdAddress: String, sshdConfig: [String]) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-it-\(UUID().uuidString.prefix(8))").path
        try Self.makeDirectories(dir)
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
        stopEverything(supervisorGrace: 2)
        web.stop()
        sshd.stop()
        removeFiles()
    }

    func state(_ name: String) -> TunnelState? {
        ((try? reportedStatus(name))?["state"] as? String).flatMap(TunnelState.init(rawValue:))
    }
}
