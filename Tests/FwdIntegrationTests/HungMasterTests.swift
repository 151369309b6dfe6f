import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A master that hangs (SIGSTOP: its socket accepts, nothing answers) holds up only its own host. Against a
/// real sshd, with the real binary: while a forward request to the stopped master is stuck, `fwd down` of a
/// tunnel on another host and `fwd status` take no longer than they did before the hang (+ 100 ms).
@Suite(.serialized) struct HungMasterTests {
    private static func timed(_ body: () throws -> FwdRun) rethrows -> (FwdRun, Double) {
        let start = Date()
        let run = try body()
        return (run, Date().timeIntervalSince(start))
    }

    @Test func aStoppedMasterDelaysNeitherAnotherHostsDownNorStatus() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "alpha") + "\n" + f.sshd.clientConfigBlock(alias: "beta"))
            let ports = try (0..<5).map { _ in try LocalPort.free() }
            try f.write(config: """
            [tunnels.a1]
            host = "alpha"
            local = "\(ports[0]):127.0.0.1:\(f.web.port)"
            [tunnels.a2]
            host = "alpha"
            local = "\(ports[1]):127.0.0.1:\(f.web.port)"
            [tunnels.b1]
            host = "beta"
            local = "\(ports[2]):127.0.0.1:\(f.web.port)"
            [tunnels.b2]
            host = "beta"
            local = "\(ports[3]):127.0.0.1:\(f.web.port)"
            [tunnels.b3]
            host = "beta"
            local = "\(ports[4]):127.0.0.1:\(f.web.port)"
            """)
            #expect(try f.fwd("up", "a1", "b1", "b2", "b3").ok)
            // Baselines with every master healthy: a `fwd down` of one tunnel on beta, and `fwd status`.
            let (down, downBefore) = try Self.timed { try f.fwd("down", "b3") }
            #expect(down.ok, "\(down.stderr)")
            let (_, statusBefore) = try Self.timed { try f.fwd("status") }

            let alpha = try #require(f.masters().first { ProcessTable.commandLine(of: $0).contains("alpha") })
            kill(alpha, SIGSTOP)
            defer {
                kill(alpha, SIGCONT)
            }
            // A request that needs the stopped master: its forward request gets no answer (the mux request
            // waits up to 10 s). It runs in the background; what follows must not queue behind it.
            let env = f.environment
            let upA2 = try ChildProcess([FwdFixture.binary, "up", "a2", "--timeout", "20"], outputPath: f.dir + "/up-a2.out", environment: env)
            try await Task.sleep(for: .milliseconds(500))
            #expect(upA2.waitExit(timeout: 0) == nil, "fwd up a2 returned while its master is stopped")

            let (downB, downDuring) = try Self.timed { try f.fwd("down", "b2") }
            #expect(downB.ok, "\(downB.stderr)")
            #expect(!LocalPort.isAccepting(port: ports[3]), "b2's port still listens after `fwd down b2`")
            let (status, statusDuring) = try Self.timed { try f.fwd("status") }
            #expect(status.ok)
            print("fwd hung master: `fwd down` on another host \(Int(downBefore * 1000)) ms before the SIGSTOP, \(Int(downDuring * 1000)) ms during; `fwd status` \(Int(statusBefore * 1000)) ms before, \(Int(statusDuring * 1000)) ms during")
            #expect(downDuring <= downBefore + 0.1, "fwd down b2 took \(downDuring) s with alpha's master stopped (\(downBefore) s before)")
            #expect(statusDuring <= statusBefore + 0.1, "fwd status took \(statusDuring) s with alpha's master stopped (\(statusBefore) s before)")
            // The other host keeps working throughout.
            #expect(f.fetchRetrying(port: ports[2], timeout: 3)?.body == f.pageBody)
            kill(alpha, SIGCONT)
            _ = upA2.waitExit(timeout: 25)
            #expect(try f.fwd("down", "--all").ok)
        }
    }
}
